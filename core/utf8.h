/* UTF-8 decoding and encoding of one code point, for the JSON codecs (core/pbjson.c,
 * core/auth_token.c), with Go's rules (Go's JSON is what they must match). */
#ifndef UETCD_CORE_UTF8_H
#define UETCD_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence at s (n >= 1 bytes available), or 0 if invalid, as
 * Go's utf8.DecodeRune accepts it: no overlongs, no surrogates, nothing past U+10FFFF.
 * *cp gets the code point. */
static inline size_t utf8_len(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t c0 = s[0];
	size_t len;
	uint32_t v, min;

	if (c0 < 0x80) {
		*cp = c0;
		return 1;
	}
	if ((c0 & 0xe0) == 0xc0) {
		len = 2, v = c0 & 0x1f, min = 0x80;
	} else if ((c0 & 0xf0) == 0xe0) {
		len = 3, v = c0 & 0x0f, min = 0x800;
	} else if ((c0 & 0xf8) == 0xf0) {
		len = 4, v = c0 & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* Writes cp (<= 0x10ffff; the caller has replaced invalid ones) into out: 1 to 4 bytes. */
static inline size_t utf8_put(uint8_t *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xc0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xe0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (uint8_t)(0xf0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

#endif
