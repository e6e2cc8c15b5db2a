/*
 * rbtree_driver.c -- vmapsim's red-black tree oracle.
 *
 * Runs the Linux kernel's own red-black tree code (lib/rbtree.c and the
 * augmented API of include/linux/rbtree_augmented.h, Linux 6.12) in
 * userspace, on nodes laid out like mm/vmalloc.c's free-area tree, and prints
 * the exact tree shapes the kernel builds.  vmapsim's tests compare
 * vmapsim/rbtree.py against these shapes (tests/data/rbtree-oracle.json).
 *
 * This file is vmapsim's own code; no kernel code is copied into it.  It is
 * compiled together with the kernel's unmodified lib/rbtree.c, with the stub
 * headers of compat/ searched before the kernel's include/ directory:
 *
 *   gcc -std=gnu11 -O2 -Icompat -I$KERNEL/include \
 *       rbtree_driver.c $KERNEL/lib/rbtree.c -o rbtree_driver
 *
 * tests/oracle/make_fixture.py does exactly that.
 *
 * Commands, one per line on stdin, numbers in decimal:
 *
 *   insert S E     add the free range [S,E) the way insert_vmap_area_augment()
 *                  does (no merging).
 *   erase S        remove the range that starts at S, as unlink_va_augment().
 *   set S NS NE    move the range that starts at S to [NS,NE) in place, as
 *                  va_clip() (adjust_va_to_fit_type() in older kernels) does
 *                  to the area it splits for the LE, RE and NE fit types, then
 *                  propagate as augment_tree_propagate_from().
 *   merge S E      give [S,E) back to the tree as
 *                  merge_or_add_vmap_area_augment() does: coalesce with the
 *                  neighbour(s) it touches, otherwise insert it.
 *   dump           print the tree on one line, preorder, each node as
 *                  start:end:colour:subtree_max_size (colour r or b) and each
 *                  missing child as '.'.
 *
 * What 6.12's mm/vmalloc.c does to the tree, in our words:
 *
 *   - Inserting (insert_vmap_area_augment -> find_va_links, link_va_augment):
 *     descend from the root (or, for the NE split, from the node being split,
 *     which ends at the same link) going left when the new range ends at or
 *     before a node's start and right when it starts at or after the node's
 *     end.  The node is linked there with rb_link_node() (red, no children),
 *     rebalanced with rb_insert_augmented() -- the augment rotate callback
 *     hands the old subtree root's subtree_max_size to the new subtree root
 *     and recomputes the old one -- and only *after* rebalancing is the new
 *     node's subtree_max_size set to 0.  Then augment_tree_propagate_from()
 *     runs the RB_DECLARE_CALLBACKS_MAX propagate callback from the new node
 *     with no stop node: it recomputes max(own size, children's values) node
 *     by node towards the root, and stops at the first node whose stored
 *     value already equals the recomputed one.  It is NOT an unconditional
 *     walk to the root.  (The value the field held before linking is
 *     whatever the allocation left there; the driver's --poison option sets
 *     it so that the fixture generator can check the result does not depend
 *     on it.)
 *   - Erasing (unlink_va_augment): rb_erase_augmented() with the same
 *     callbacks, i.e. the kernel's own successor choice, copy, propagate and
 *     recolouring; nothing else.
 *   - Resizing (va_clip for LE/RE/NE): va_start/va_end are written in place,
 *     then augment_tree_propagate_from() on that node (same early-stopping
 *     walk).  For NE the left remainder is then inserted as above.
 *   - Freeing (merge_or_add_vmap_area_augment): find the link as for an
 *     insert; the address-order neighbours of that link are "next" and
 *     "prev".  If next starts where the range ends, next's va_start is
 *     lowered to the range's start and next becomes the merged area.  Then
 *     if prev ends where the (possibly merged) range starts: when next was
 *     already merged, next is first erased from the tree
 *     (rb_erase_augmented); prev's va_end is raised to the end, and prev is
 *     the node that survives.  If neither touches, the range is linked as in
 *     an insert (without that insert's own propagate).  Finally
 *     augment_tree_propagate_from() runs once from the surviving node.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <linux/rbtree_augmented.h>

/* The fields of mm/vmalloc.c's struct vmap_area that the free tree uses. */
struct vmap_area {
	unsigned long va_start;
	unsigned long va_end;
	struct rb_node rb_node;
	unsigned long subtree_max_size;
};

static __always_inline unsigned long va_size(struct vmap_area *va)
{
	return va->va_end - va->va_start;
}

RB_DECLARE_CALLBACKS_MAX(static, free_vmap_area_rb_augment_cb,
	struct vmap_area, rb_node, unsigned long, subtree_max_size, va_size)

static struct rb_root free_root = RB_ROOT;
static unsigned long poison;	/* subtree_max_size of a node before linking */
static unsigned long lineno;

static void die(const char *msg, const char *line)
{
	fprintf(stderr, "rbtree_driver: line %lu: %s: %s\n", lineno, msg, line);
	exit(1);
}

static struct vmap_area *area(struct rb_node *n)
{
	return rb_entry(n, struct vmap_area, rb_node);
}

static struct vmap_area *new_area(unsigned long start, unsigned long end)
{
	struct vmap_area *va = malloc(sizeof(*va));

	if (!va) {
		perror("malloc");
		exit(1);
	}
	va->va_start = start;
	va->va_end = end;
	va->subtree_max_size = poison;
	return va;
}

/* The range that starts exactly at addr, or NULL. */
static struct vmap_area *lookup(unsigned long addr)
{
	struct rb_node *n = free_root.rb_node;

	while (n) {
		struct vmap_area *va = area(n);

		if (addr < va->va_start)
			n = n->rb_left;
		else if (addr >= va->va_end)
			n = n->rb_right;
		else
			return va->va_start == addr ? va : NULL;
	}
	return NULL;
}

/*
 * Address descent from the root to the empty link where [start,end) belongs.
 * Returns NULL when the range overlaps a node of the tree.
 */
static struct rb_node **find_link(unsigned long start, unsigned long end,
				  struct rb_node **parent)
{
	struct rb_node **link = &free_root.rb_node;

	*parent = NULL;
	while (*link) {
		struct vmap_area *va = area(*link);

		*parent = *link;
		if (end <= va->va_start)
			link = &(*link)->rb_left;
		else if (start >= va->va_end)
			link = &(*link)->rb_right;
		else
			return NULL;
	}
	return link;
}

/* Propagation as augment_tree_propagate_from(): no stop node. */
static void propagate_from(struct vmap_area *va)
{
	free_vmap_area_rb_augment_cb_propagate(&va->rb_node, NULL);
}

/* Linking as link_va_augment(): rebalance first, then zero the new node. */
static void link_augment(struct vmap_area *va, struct rb_node *parent,
			 struct rb_node **link)
{
	rb_link_node(&va->rb_node, parent, link);
	rb_insert_augmented(&va->rb_node, &free_root,
			    &free_vmap_area_rb_augment_cb);
	va->subtree_max_size = 0;
}

static void unlink_augment(struct vmap_area *va)
{
	rb_erase_augmented(&va->rb_node, &free_root,
			   &free_vmap_area_rb_augment_cb);
	RB_CLEAR_NODE(&va->rb_node);
}

static void do_insert(unsigned long start, unsigned long end, const char *line)
{
	struct rb_node *parent, **link;
	struct vmap_area *va;

	if (start >= end)
		die("empty range", line);
	link = find_link(start, end, &parent);
	if (!link)
		die("range overlaps the tree", line);
	va = new_area(start, end);
	link_augment(va, parent, link);
	propagate_from(va);
}

static void do_erase(unsigned long start, const char *line)
{
	struct vmap_area *va = lookup(start);

	if (!va)
		die("no range starts there", line);
	unlink_augment(va);
	free(va);
}

static void do_set(unsigned long start, unsigned long nstart,
		   unsigned long nend, const char *line)
{
	struct vmap_area *va = lookup(start);
	struct rb_node *prev, *next;

	if (!va)
		die("no range starts there", line);
	if (nstart >= nend)
		die("empty range", line);
	/* The caller must keep address order; check it rather than trust it. */
	prev = rb_prev(&va->rb_node);
	next = rb_next(&va->rb_node);
	if ((prev && area(prev)->va_end > nstart) ||
	    (next && area(next)->va_start < nend))
		die("new range overlaps a neighbour", line);
	va->va_start = nstart;
	va->va_end = nend;
	propagate_from(va);
}

static void do_merge(unsigned long start, unsigned long end, const char *line)
{
	struct rb_node *parent, **link, *nextn, *prevn;
	struct vmap_area *va, *next, *prev;
	int merged = 0;

	if (start >= end)
		die("empty range", line);
	link = find_link(start, end, &parent);
	if (!link)
		die("range overlaps the tree", line);

	/* The address-order neighbours of the link found above. */
	if (!parent)
		nextn = NULL;
	else if (link == &parent->rb_left)
		nextn = parent;
	else
		nextn = rb_next(parent);
	prevn = nextn ? rb_prev(nextn) : rb_last(&free_root);
	next = nextn ? area(nextn) : NULL;
	prev = prevn ? area(prevn) : NULL;

	va = new_area(start, end);
	if (next && next->va_start == va->va_end) {
		next->va_start = va->va_start;
		free(va);
		va = next;
		merged = 1;
	}
	if (prev && prev->va_end == va->va_start) {
		if (merged)
			unlink_augment(va);
		prev->va_end = va->va_end;
		free(va);
		va = prev;
		merged = 1;
	}
	if (!merged)
		link_augment(va, parent, link);
	propagate_from(va);
}

static void dump_node(struct rb_node *n, FILE *out, int *first)
{
	if (!*first)
		fputc(' ', out);
	*first = 0;
	if (!n) {
		fputc('.', out);
		return;
	}
	fprintf(out, "%lu:%lu:%c:%lu", area(n)->va_start, area(n)->va_end,
		rb_is_red(n) ? 'r' : 'b', area(n)->subtree_max_size);
	dump_node(n->rb_left, out, first);
	dump_node(n->rb_right, out, first);
}

static void do_dump(void)
{
	int first = 1;

	dump_node(free_root.rb_node, stdout, &first);
	fputc('\n', stdout);
}

static unsigned long number(const char *s, const char *line)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end)
		die("bad number", line);
	return v;
}

int main(int argc, char **argv)
{
	char line[512];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--poison") && i + 1 < argc) {
			poison = strtoul(argv[++i], NULL, 0);
		} else {
			fprintf(stderr, "usage: %s [--poison N] < commands\n",
				argv[0]);
			return 2;
		}
	}

	while (fgets(line, sizeof(line), stdin)) {
		char *arg[5];
		int n = 0;
		char *save, *tok;

		lineno++;
		line[strcspn(line, "\n")] = '\0';
		for (tok = strtok_r(line, " \t", &save); tok && n < 5;
		     tok = strtok_r(NULL, " \t", &save))
			arg[n++] = tok;
		if (n == 0)
			continue;

		if (!strcmp(arg[0], "insert") && n == 3)
			do_insert(number(arg[1], arg[0]), number(arg[2], arg[0]),
				  arg[0]);
		else if (!strcmp(arg[0], "erase") && n == 2)
			do_erase(number(arg[1], arg[0]), arg[0]);
		else if (!strcmp(arg[0], "set") && n == 4)
			do_set(number(arg[1], arg[0]), number(arg[2], arg[0]),
			       number(arg[3], arg[0]), arg[0]);
		else if (!strcmp(arg[0], "merge") && n == 3)
			do_merge(number(arg[1], arg[0]), number(arg[2], arg[0]),
				 arg[0]);
		else if (!strcmp(arg[0], "dump") && n == 1)
			do_dump();
		else
			die("unknown command", arg[0]);
	}
	return 0;
}
