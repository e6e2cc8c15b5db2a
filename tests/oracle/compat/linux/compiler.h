/* vmapsim oracle stub: see ../kcompat.h */
#include "../kcompat.h"
