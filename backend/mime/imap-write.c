/* IMAP ENVELOPE, BODY and BODYSTRUCTURE writers (RFC 3501 7.4.2 and the
 * formal syntax of section 9; RFC 9051 7.5.2) over a parsed message, and
 * the nstring quoting they use. See postern/mail-imap.h for the output
 * conventions. */
#include "mime-private.h"

#include "postern/buf.h"
#include "postern/mail-imap.h"

#include <strings.h>

/* string = quoted / literal
 * quoted = DQUOTE *QUOTED-CHAR DQUOTE
 * QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials
 * TEXT-CHAR = <any CHAR except CR and LF>    CHAR = %x01-7F
 * literal = "{" number "}" CRLF *CHAR8        CHAR8 = %x01-ff */
int mail_imap_append_string_n(struct pn_buf *out, const uint8_t *s, size_t len)
{
	bool literal = false;
	size_t nuls = 0, escapes = 0;

	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];
		if (c == '\0')
			nuls++;
		else if (c >= 0x80 || c == '\r' || c == '\n')
			literal = true;
		else if (c == '"' || c == '\\')
			escapes++;
	}
	if (literal) {
		if (pn_buf_printf(out, "{%zu}\r\n", len - nuls) < 0)
			return -1;
		if (nuls == 0)
			return pn_buf_append(out, s, len);
	} else {
		if (pn_buf_append(out, "\"", 1) < 0)
			return -1;
		if (nuls == 0 && escapes == 0) {
			if (pn_buf_append(out, s, len) < 0)
				return -1;
			return pn_buf_append(out, "\"", 1);
		}
	}
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = s[i];
		if (c != '\0' && (literal || (c != '"' && c != '\\')))
			continue;
		if (pn_buf_append(out, s + run, i - run) < 0)
			return -1;
		run = i + 1;
		if (c != '\0') {
			uint8_t esc[2] = { '\\', c };
			if (pn_buf_append(out, esc, 2) < 0)
				return -1;
		}
	}
	if (pn_buf_append(out, s + run, len - run) < 0)
		return -1;
	return literal ? 0 : pn_buf_append(out, "\"", 1);
}

static int append_string(struct pn_buf *out, const char *s)
{
	return mail_imap_append_string_n(out, (const uint8_t *)s, strlen(s));
}

int mail_imap_append_nstring(struct pn_buf *out, const char *s)
{
	if (s == NULL)
		return pn_buf_append(out, "NIL", 3);
	return append_string(out, s);
}

/* address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")" */
static int write_addresses(struct pn_buf *out, const struct mail_address *a)
{
	if (a == NULL)
		return pn_buf_append(out, "NIL", 3);
	if (pn_buf_append(out, "(", 1) < 0)
		return -1;
	for (; a != NULL; a = a->next) {
		if (pn_buf_append(out, "(", 1) < 0 ||
		    mail_imap_append_nstring(out, a->name) < 0 ||
		    pn_buf_append(out, " ", 1) < 0 ||
		    mail_imap_append_nstring(out, a->route) < 0 ||
		    pn_buf_append(out, " ", 1) < 0 ||
		    mail_imap_append_nstring(out, a->mailbox) < 0 ||
		    pn_buf_append(out, " ", 1) < 0 ||
		    mail_imap_append_nstring(out, a->domain) < 0 ||
		    pn_buf_append(out, ")", 1) < 0)
			return -1;
	}
	return pn_buf_append(out, ")", 1);
}

/* envelope = "(" env-date SP env-subject SP env-from SP env-sender SP
 *            env-reply-to SP env-to SP env-cc SP env-bcc SP
 *            env-in-reply-to SP env-message-id ")"
 * RFC 3501 7.4.2: "If the Sender or Reply-To lines are absent in the
 * [RFC-2822] header, or are present but empty, the server sets the
 * corresponding member of the envelope to be the same value as the from
 * member." */
static int write_envelope(struct pn_buf *out, const struct mail_envelope *env)
{
	static const struct mail_envelope empty;
	if (env == NULL)
		env = &empty;
	const struct mail_address *sender = env->sender ? env->sender : env->from;
	const struct mail_address *reply_to = env->reply_to ? env->reply_to : env->from;

	if (pn_buf_append(out, "(", 1) < 0 ||
	    mail_imap_append_nstring(out, env->date) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, env->subject) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 || write_addresses(out, env->from) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 || write_addresses(out, sender) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 || write_addresses(out, reply_to) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 || write_addresses(out, env->to) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 || write_addresses(out, env->cc) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 || write_addresses(out, env->bcc) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, env->in_reply_to) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, env->message_id) < 0 ||
	    pn_buf_append(out, ")", 1) < 0)
		return -1;
	return 0;
}

int mail_envelope_write(const struct mail_message *msg,
			const struct mail_part *part, struct pn_buf *out)
{
	if (part == NULL)
		part = msg->root;
	return write_envelope(out, part->envelope);
}

/* body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
 * A text part without a charset gets ("charset" "us-ascii") added, the
 * RFC 2045 5.2 default, as Dovecot does. */
static int write_params(struct pn_buf *out, const struct mail_param *params,
			unsigned int n, bool default_charset)
{
	bool charset = false;

	if (n == 0 && !default_charset)
		return pn_buf_append(out, "NIL", 3);
	if (pn_buf_append(out, "(", 1) < 0)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		const struct mail_param *p = &params[i];
		if (strcasecmp(p->name, "charset") == 0)
			charset = true;
		if (i > 0 && pn_buf_append(out, " ", 1) < 0)
			return -1;
		if (p->extended) {
			/* RFC 2231 form: the name gets its '*' back. Names
			 * are tokens, which need no escaping. */
			if (pn_buf_append(out, "\"", 1) < 0 ||
			    pn_buf_append_str(out, p->name) < 0 ||
			    pn_buf_append(out, "*\"", 2) < 0)
				return -1;
		} else if (append_string(out, p->name) < 0) {
			return -1;
		}
		if (pn_buf_append(out, " ", 1) < 0 || append_string(out, p->value) < 0)
			return -1;
	}
	if (default_charset && !charset &&
	    pn_buf_append_str(out, n > 0 ? " \"charset\" \"us-ascii\""
					 : "\"charset\" \"us-ascii\"") < 0)
		return -1;
	return pn_buf_append(out, ")", 1);
}

/* body-fld-dsp = "(" string SP body-fld-param ")" / nil
 * body-fld-lang = nstring / "(" string *(SP string) ")"
 * body-fld-loc = nstring */
static int write_ext_common(struct pn_buf *out, const struct mail_part *p)
{
	if (pn_buf_append(out, " ", 1) < 0)
		return -1;
	if (p->disposition == NULL) {
		if (pn_buf_append(out, "NIL", 3) < 0)
			return -1;
	} else if (pn_buf_append(out, "(", 1) < 0 ||
		   append_string(out, p->disposition) < 0 ||
		   pn_buf_append(out, " ", 1) < 0 ||
		   write_params(out, p->disp_params, p->n_disp_params, false) < 0 ||
		   pn_buf_append(out, ")", 1) < 0) {
		return -1;
	}
	if (pn_buf_append(out, " ", 1) < 0)
		return -1;
	if (p->n_languages == 0) {
		if (pn_buf_append(out, "NIL", 3) < 0)
			return -1;
	} else {
		for (unsigned int i = 0; i < p->n_languages; i++) {
			if (pn_buf_append(out, i == 0 ? "(" : " ", 1) < 0 ||
			    append_string(out, p->languages[i]) < 0)
				return -1;
		}
		if (pn_buf_append(out, ")", 1) < 0)
			return -1;
	}
	if (pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, p->location) < 0)
		return -1;
	return 0;
}

static int write_body(struct pn_buf *out, const struct mail_part *p, bool ext);

/* body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
 * body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang
 *                  [SP body-fld-loc *(SP body-extension)]]] */
static int write_multipart(struct pn_buf *out, const struct mail_part *p,
			   bool ext)
{
	if (p->children == NULL) {
		/* The grammar needs one body: an empty text/plain part. */
		if (pn_buf_append_str(out, ext ?
			"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
			"\"7bit\" 0 0 NIL NIL NIL NIL)" :
			"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL "
			"\"7bit\" 0 0)") < 0)
			return -1;
	}
	for (const struct mail_part *c = p->children; c != NULL; c = c->next) {
		if (write_body(out, c, ext) < 0)
			return -1;
	}
	if (pn_buf_append(out, " ", 1) < 0 || append_string(out, p->subtype) < 0)
		return -1;
	if (!ext)
		return 0;
	if (pn_buf_append(out, " ", 1) < 0 ||
	    write_params(out, p->params, p->n_params, false) < 0)
		return -1;
	return write_ext_common(out, p);
}

/* body-type-1part = (body-type-basic / body-type-msg / body-type-text)
 *                   [SP body-ext-1part]
 * body-type-basic = media-basic SP body-fields
 * body-type-msg   = media-message SP body-fields SP envelope SP body SP
 *                   body-fld-lines
 * body-type-text  = media-text SP body-fields SP body-fld-lines
 * body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP
 *                   body-fld-enc SP body-fld-octets
 * body-ext-1part  = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang
 *                   [SP body-fld-loc *(SP body-extension)]]] */
static int write_leaf(struct pn_buf *out, const struct mail_part *p, bool ext)
{
	bool opaque = (p->flags & MAIL_PART_OPAQUE) != 0;
	bool text = !opaque && (p->flags & MAIL_PART_TEXT) != 0;
	bool message = !opaque && (p->flags & MAIL_PART_MESSAGE) != 0;

	if (opaque) {
		if (pn_buf_append_str(out, "\"application\" \"octet-stream\"") < 0)
			return -1;
	} else if (append_string(out, p->type) < 0 ||
		   pn_buf_append(out, " ", 1) < 0 ||
		   append_string(out, p->subtype) < 0) {
		return -1;
	}
	if (pn_buf_append(out, " ", 1) < 0 ||
	    write_params(out, p->params, p->n_params, text) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, p->id) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, p->description) < 0 ||
	    pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, p->encoding != NULL ? p->encoding : "7bit") < 0 ||
	    pn_buf_printf(out, " %zu", p->body_size) < 0)
		return -1;
	if (text && pn_buf_printf(out, " %zu", p->body_lines) < 0)
		return -1;
	if (message) {
		if (pn_buf_append(out, " ", 1) < 0 ||
		    write_envelope(out, p->children->envelope) < 0 ||
		    pn_buf_append(out, " ", 1) < 0 ||
		    write_body(out, p->children, ext) < 0 ||
		    pn_buf_printf(out, " %zu", p->body_lines) < 0)
			return -1;
	}
	if (!ext)
		return 0;
	if (pn_buf_append(out, " ", 1) < 0 ||
	    mail_imap_append_nstring(out, p->md5) < 0)
		return -1;
	return write_ext_common(out, p);
}

/* body = "(" (body-type-1part / body-type-mpart) ")" */
static int write_body(struct pn_buf *out, const struct mail_part *p, bool ext)
{
	if (pn_buf_append(out, "(", 1) < 0)
		return -1;
	int r = (p->flags & MAIL_PART_MULTIPART) ? write_multipart(out, p, ext)
						 : write_leaf(out, p, ext);
	if (r < 0)
		return -1;
	return pn_buf_append(out, ")", 1);
}

int mail_bodystructure_write(const struct mail_message *msg, struct pn_buf *out,
			     bool extensible)
{
	return write_body(out, msg->root, extensible);
}
