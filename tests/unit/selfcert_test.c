/* --auto-tls certificates (tls/selfcert.c): made once with the right modes, loadable as a
 * server certificate (key and certificate match), kept when present, bad hosts refused. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/selfcert.h"
#include "tls/tls.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/uetcd_selfcert_test_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

static const char *in_dir(const char *name)
{
	static char path[128];
	snprintf(path, sizeof path, "%s/fixtures/client/%s", dir, name);
	return path;
}

Test(selfcert, made_once_and_loadable, .init = setup, .fini = teardown)
{
	const char *hosts[] = {"127.0.0.1", "::1", "localhost", "127.0.0.1"};
	char sub[96], err[256] = "";
	struct stat st;

	snprintf(sub, sizeof sub, "%s/fixtures/client", dir);
	cr_assert_eq(tls_selfcert_ensure(sub, hosts, 4, 1, err, sizeof err), 1, "%s", err);
	cr_assert_eq(stat(in_dir("key.pem"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(stat(in_dir("cert.pem"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0644);

	char cert[128], key[128];
	snprintf(cert, sizeof cert, "%s", in_dir("cert.pem"));
	snprintf(key, sizeof key, "%s", in_dir("key.pem"));
	struct tls_server_config tc = {.cert_file = cert, .key_file = key};
	struct tls_ctx *ctx = tls_ctx_new(&tc, err, sizeof err);
	cr_assert_not_null(ctx, "the generated pair does not load: %s", err);
	tls_ctx_free(ctx);

	/* present: kept as it is */
	FILE *f = fopen(in_dir("cert.pem"), "r");
	char before[2048] = "", after[2048] = "";
	cr_assert(fread(before, 1, sizeof before - 1, f) > 0);
	fclose(f);
	cr_assert_eq(tls_selfcert_ensure(sub, hosts, 1, 1, err, sizeof err), 0, "%s", err);
	f = fopen(in_dir("cert.pem"), "r");
	cr_assert(fread(after, 1, sizeof after - 1, f) > 0);
	fclose(f);
	cr_assert_str_eq(before, after);
}

Test(selfcert, bad_arguments, .init = setup, .fini = teardown)
{
	char name[300], err[256];
	const char *hosts[TLS_SELFCERT_HOSTS_MAX + 1];

	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	hosts[0] = name;
	cr_assert_eq(tls_selfcert_ensure(dir, hosts, 1, 1, err, sizeof err), -EINVAL);
	hosts[0] = "";
	cr_assert_eq(tls_selfcert_ensure(dir, hosts, 1, 1, err, sizeof err), -EINVAL);
	hosts[0] = "localhost";
	cr_assert_eq(tls_selfcert_ensure(dir, hosts, 0, 1, err, sizeof err), -EINVAL);
	cr_assert_eq(tls_selfcert_ensure(dir, hosts, 1, 0, err, sizeof err), -EINVAL);
	cr_assert(strstr(err, "selfSignedCertValidity"));
	for (size_t i = 0; i <= TLS_SELFCERT_HOSTS_MAX; i++)
		hosts[i] = "localhost";
	cr_assert_eq(tls_selfcert_ensure(dir, hosts, TLS_SELFCERT_HOSTS_MAX + 1, 1, err, sizeof err), -EINVAL);
	/* nothing was written by a refused call */
	struct stat st;
	cr_assert_neq(stat(in_dir("cert.pem"), &st), 0);
}
