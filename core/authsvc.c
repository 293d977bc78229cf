/* See authsvc.h. */
#include "core/authsvc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/auth.h"
#include "core/auth_pw.h"
#include "core/auth_token.h"
#include "core/log.h"
#include "core/qsbr.h"

#define SWEEP_MS 1000 /* expired simple tokens are dropped about once a second, as etcd */

struct authsvc {
	_Alignas(64) _Atomic(struct auth *) pub;
	_Atomic bool enabled;
	_Alignas(64) struct auth *w; /* the sequencer's */
	struct qsbr *q;
	/* tokens */
	pthread_mutex_t tok_mu;
	enum auth_token_type type;
	struct auth_token_simple *simple;
	struct auth_token_jwt *jwt;
	uint64_t next_index, last_sweep_ms;
	/* passwords */
	int cost;
	pthread_mutex_t pw_mu;
	pthread_cond_t pw_cv;
	struct authsvc_pw_job *pw_head, *pw_tail;
	unsigned pw_queued; /* jobs queued and not yet taken: at most AUTHSVC_PW_QUEUE_MAX */
	bool pw_stop;
	pthread_t pw_thread;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void *pw_main(void *arg)
{
	struct authsvc *a = arg;

	pthread_mutex_lock(&a->pw_mu);
	for (;;) {
		while (!a->pw_head && !a->pw_stop)
			pthread_cond_wait(&a->pw_cv, &a->pw_mu);
		if (a->pw_stop)
			break;
		struct authsvc_pw_job *j = a->pw_head;
		a->pw_queued--;
		a->pw_head = j->next;
		if (!a->pw_head)
			a->pw_tail = NULL;
		pthread_mutex_unlock(&a->pw_mu);
		if (j->verify) {
			j->rc = auth_pw_verify(j->password, j->len, j->hash, j->hash_len) ? 0 : AUTH_ERR_AUTH_FAILED;
		} else {
			j->rc = auth_pw_hash(j->password, j->len, a->cost, j->hash);
			j->hash_len = j->rc ? 0 : strlen(j->hash);
		}
		j->done(j);
		pthread_mutex_lock(&a->pw_mu);
	}
	pthread_mutex_unlock(&a->pw_mu);
	return NULL;
}

static void auth_free_void(void *p) { auth_free(p); }

struct authsvc *authsvc_new(const char *token_opts, uint64_t token_ttl_s, int bcrypt_cost, struct qsbr *q, char *err,
			    size_t errlen)
{
	struct auth_token_opts o;
	const char *detail = NULL;
	struct authsvc *a;
	int rc;

	if ((rc = auth_token_opts_parse(token_opts, &o, &detail))) {
		snprintf(err, errlen, "--auth-token %s: %s", token_opts, detail ? detail : auth_strerror(rc));
		return NULL;
	}
	a = aligned_alloc(64, (sizeof *a + 63) & ~(size_t)63);
	if (!a)
		log_fatal("auth: out of memory");
	memset(a, 0, sizeof *a);
	a->type = o.type;
	if (o.type == AUTH_TOKEN_JWT) {
		a->jwt = auth_token_jwt_new(&o, &rc, &detail);
		if (!a->jwt) {
			snprintf(err, errlen, "--auth-token: %s%s%s", auth_strerror(rc), detail ? ": " : "",
				 detail ? detail : "");
			free(a);
			return NULL;
		}
	} else if (o.type == AUTH_TOKEN_SIMPLE) {
		a->simple = auth_token_simple_new(token_ttl_s * 1000, 0);
	}
	a->q = q;
	a->w = auth_new();
	atomic_init(&a->pub, auth_clone(a->w));
	atomic_init(&a->enabled, false);
	a->cost = auth_pw_cost(bcrypt_cost);
	pthread_mutex_init(&a->tok_mu, NULL);
	pthread_mutex_init(&a->pw_mu, NULL);
	pthread_cond_init(&a->pw_cv, NULL);
	if (pthread_create(&a->pw_thread, NULL, pw_main, a))
		log_fatal("auth: cannot start the password thread");
	pthread_setname_np(a->pw_thread, "uetcd-passwd");
	return a;
}

void authsvc_free(struct authsvc *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->pw_mu);
	a->pw_stop = true;
	pthread_cond_signal(&a->pw_cv);
	pthread_mutex_unlock(&a->pw_mu);
	pthread_join(a->pw_thread, NULL);
	auth_token_simple_free(a->simple);
	auth_token_jwt_free(a->jwt);
	auth_free(a->w);
	auth_free(atomic_load(&a->pub));
	free(a);
}

struct auth *authsvc_writer(struct authsvc *a) { return a->w; }

void authsvc_replace(struct authsvc *a, struct auth *state)
{
	auth_free(a->w);
	a->w = state;
}

void authsvc_publish(struct authsvc *a)
{
	struct auth *old = atomic_exchange(&a->pub, auth_clone(a->w));

	atomic_store(&a->enabled, auth_is_enabled(a->w));
	qsbr_retire(a->q, old, auth_free_void);
}

const struct auth *authsvc_view(const struct authsvc *a) { return atomic_load_explicit(&a->pub, memory_order_acquire); }

bool authsvc_enabled(const struct authsvc *a) { return atomic_load_explicit(&a->enabled, memory_order_relaxed); }

static struct authsvc_ident *ident_new(int err, uint64_t revision, const uint8_t *user, size_t ulen)
{
	struct authsvc_ident *id = malloc(sizeof *id + ulen + 1);

	if (!id)
		log_fatal("auth: out of memory");
	id->err = err;
	id->revision = revision;
	id->ulen = ulen;
	if (ulen)
		memcpy(id->user, user, ulen);
	id->user[ulen] = 0;
	return id;
}

struct authsvc_ident *authsvc_identify(struct authsvc *a, const char *token, size_t tlen, const char *cn)
{
	static _Thread_local uint8_t user[AUTH_NAME_MAX];
	uint64_t rev = 0, now;
	size_t ulen = 0;
	int rc = AUTH_ERR_INVALID_AUTH_TOKEN;

	if (!token)
		return cn ? ident_new(0, 0, (const uint8_t *)cn, strlen(cn)) : NULL;
	pthread_mutex_lock(&a->tok_mu);
	if (a->simple) {
		now = mono_ms();
		if (now - a->last_sweep_ms >= SWEEP_MS) {
			auth_token_simple_expire(a->simple, now);
			a->last_sweep_ms = now;
		}
		rc = auth_token_simple_lookup(a->simple, token, tlen, now, user, sizeof user, &ulen, &rev);
		rev = 0; /* a simple token always acts with the current auth revision (etcd) */
	} else if (a->jwt) {
		rc = auth_token_jwt_verify(a->jwt, token, tlen, wall_ms(), user, sizeof user, &ulen, &rev);
	}
	pthread_mutex_unlock(&a->tok_mu);
	if (rc)
		return ident_new(AUTH_ERR_INVALID_AUTH_TOKEN, 0, NULL, 0);
	return ident_new(0, rev, user, ulen);
}

int authsvc_issue(struct authsvc *a, const uint8_t *user, size_t ulen, uint64_t revision, char *out, size_t cap)
{
	int rc = AUTH_ERR_INVALID_AUTH_MGMT;

	pthread_mutex_lock(&a->tok_mu);
	if (a->simple && cap > AUTH_TOKEN_SIMPLE_MAX)
		rc = auth_token_simple_assign(a->simple, user, ulen, revision, ++a->next_index, mono_ms(), out);
	else if (a->jwt)
		rc = (int)auth_token_jwt_sign(a->jwt, user, ulen, revision, wall_ms(), out, cap);
	pthread_mutex_unlock(&a->tok_mu);
	return rc;
}

void authsvc_tokens_drop_user(struct authsvc *a, const uint8_t *user, size_t ulen)
{
	pthread_mutex_lock(&a->tok_mu);
	if (a->simple)
		auth_token_simple_invalidate_user(a->simple, user, ulen);
	pthread_mutex_unlock(&a->tok_mu);
}

void authsvc_tokens_clear(struct authsvc *a)
{
	pthread_mutex_lock(&a->tok_mu);
	if (a->simple)
		auth_token_simple_clear(a->simple);
	pthread_mutex_unlock(&a->tok_mu);
}

int authsvc_pw_submit(struct authsvc *a, struct authsvc_pw_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&a->pw_mu);
	if (a->pw_queued >= AUTHSVC_PW_QUEUE_MAX) { /* the bound of the password queue */
		pthread_mutex_unlock(&a->pw_mu);
		return -EBUSY;
	}
	a->pw_queued++;
	if (a->pw_tail)
		a->pw_tail->next = j;
	else
		a->pw_head = j;
	a->pw_tail = j;
	pthread_cond_signal(&a->pw_cv);
	pthread_mutex_unlock(&a->pw_mu);
	return 0;
}
