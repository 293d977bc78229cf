/* The data dir's meta file (storage/meta.c): ids derived as etcd's, the raft term of each
 * start, files written before the term existed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/meta.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/uetcd_meta_test_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

Test(meta, ids_as_etcd_derives_them)
{
	struct meta m = {0};

	/* etcd's defaults: its well-known member 8e9e05c52164694d of cluster cdf818194e3a8c32 */
	cr_assert_eq(meta_derive_ids("", "default", "http://localhost:2380", "etcd-cluster", &m), 0);
	cr_assert_eq(m.member_id, 0x8e9e05c52164694dULL);
	cr_assert_eq(m.cluster_id, 0xcdf818194e3a8c32ULL);
	cr_assert_eq(meta_derive_ids("default=http://localhost:2380", "default", "", "etcd-cluster", &m), 0);
	cr_assert_eq(m.member_id, 0x8e9e05c52164694dULL);
	/* URL order does not matter: etcd sorts them */
	struct meta a = {0}, b = {0};
	cr_assert_eq(meta_derive_ids("n=http://b:1,n=http://a:1", "n", "", "t", &a), 0);
	cr_assert_eq(meta_derive_ids("n=http://a:1,n=http://b:1", "n", "", "t", &b), 0);
	cr_assert_eq(a.member_id, b.member_id);
	cr_assert_eq(a.cluster_id, b.cluster_id);
	/* another member of the same cluster: same cluster id, its own member id */
	cr_assert_eq(meta_derive_ids("x=http://a:1,y=http://b:1", "x", "", "t", &a), 0);
	cr_assert_eq(meta_derive_ids("x=http://a:1,y=http://b:1", "y", "", "t", &b), 0);
	cr_assert_eq(a.cluster_id, b.cluster_id);
	cr_assert_neq(a.member_id, b.member_id);
}

Test(meta, ids_refused)
{
	struct meta m = {.cluster_id = 7, .member_id = 9};

	cr_assert_eq(meta_derive_ids("a=http://a:1", "b", "", "t", &m), -EINVAL);
	cr_assert_eq(meta_derive_ids("http://a:1", "a", "", "t", &m), -EINVAL);
	cr_assert_eq(meta_derive_ids("a=", "a", "", "t", &m), -EINVAL);
	cr_assert_eq(meta_derive_ids("=http://a:1", "", "", "t", &m), -EINVAL);
	cr_assert_eq(meta_derive_ids("", "a", "", "t", &m), -EINVAL);
	cr_assert_eq(m.cluster_id, 7, "untouched on error");
	cr_assert_eq(m.member_id, 9);
}

Test(meta, term_grows_at_each_start, .init = setup, .fini = teardown)
{
	struct meta want = {.cluster_id = 11, .member_id = 22}, m, again;

	cr_assert_eq(meta_open_with(dir, &want, &m), 0);
	cr_assert_eq(m.cluster_id, 11);
	cr_assert_eq(m.member_id, 22);
	cr_assert_eq(m.raft_term, 1);
	for (uint64_t t = 2; t <= 4; t++) {
		cr_assert_eq(meta_open(dir, &m), 0);
		cr_assert_eq(meta_start_term(dir, &m), 0);
		cr_assert_eq(m.raft_term, t);
		cr_assert_eq(meta_open(dir, &again), 0);
		cr_assert_eq(again.raft_term, t, "durable");
		cr_assert_eq(again.cluster_id, 11, "ids never change");
	}
	/* an existing dir keeps its ids whatever is wanted */
	want.cluster_id = 99;
	cr_assert_eq(meta_open_with(dir, &want, &m), 0);
	cr_assert_eq(m.cluster_id, 11);
}

Test(meta, file_from_before_terms, .init = setup, .fini = teardown)
{
	char path[128];
	struct meta m;

	snprintf(path, sizeof path, "%s/meta", dir);
	FILE *f = fopen(path, "w");
	fputs("uetcd-meta 1\ncluster_id 00000000000000aa\nmember_id 00000000000000bb\n", f);
	fclose(f);
	cr_assert_eq(meta_open(dir, &m), 0);
	cr_assert_eq(m.raft_term, 2, "what those starts served");
	cr_assert_eq(m.cluster_id, 0xaa);
	f = fopen(path, "w");
	fputs("uetcd-meta 1\ncluster_id 00000000000000aa\nmember_id 00000000000000bb\nraft_term 0\n", f);
	fclose(f);
	cr_assert_eq(meta_open(dir, &m), -EINVAL);
}
