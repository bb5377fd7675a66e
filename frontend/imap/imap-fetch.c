/* FETCH, STORE, COPY/MOVE, EXPUNGE, CLOSE and UNSELECT of the IMAP session
 * engine. FETCH attributes (RFC 3501 6.4.5, macros included) are parsed
 * here; the daemon supplies whole messages and cached ENVELOPE /
 * BODYSTRUCTURE values, and BODY[section]<partial> data is cut out with the
 * backend MIME library, as are BINARY[section]<partial> and BINARY.SIZE
 * (RFC 3516: the part's content transfer-decoded). A non-PEEK body fetch in a read-write mailbox first
 * asks for \Seen with a silent STORE request.
 */
#include "imap-session-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "postern/mail-date.h"
#include "postern/mail-decode.h"
#include "postern/mail-imap.h"
#include "postern/mail-message.h"

#define FETCH_MAX_ITEMS 100

enum fetch_kind {
	FI_UID, FI_FLAGS, FI_INTERNALDATE, FI_SIZE, FI_ENVELOPE, FI_MODSEQ,
	FI_BODYSTRUCTURE, FI_BODY, FI_SECTION, FI_BINARY, FI_BINARY_SIZE,
};

struct fetch_item {
	enum fetch_kind kind;
	struct mail_section sec;
	const char **fields;
	unsigned int n_fields;
	bool partial, peek;
	uint64_t off, size;
	const char *label; /* FI_SECTION: "BODY[...]" or "RFC822..." */
};

void fetch_free(struct imap_session *s)
{
	s->fetch_items = NULL; /* command memory */
	s->fetch_n = 0;
	s->fetch_set_seen = false;
	s->fetch_need = 0;
}

static struct fetch_item *item_add(struct imap_session *s, enum fetch_kind kind)
{
	if (s->fetch_n >= FETCH_MAX_ITEMS)
		return NULL;
	struct fetch_item *it = &s->fetch_items[s->fetch_n++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	return it;
}

static int add_simple(struct imap_session *s, const char *name)
{
	static const struct { const char *name; enum fetch_kind kind; } simple[] = {
		{ "UID", FI_UID }, { "FLAGS", FI_FLAGS },
		{ "INTERNALDATE", FI_INTERNALDATE }, { "RFC822.SIZE", FI_SIZE },
		{ "ENVELOPE", FI_ENVELOPE }, { "BODYSTRUCTURE", FI_BODYSTRUCTURE },
		{ "BODY", FI_BODY }, { "MODSEQ", FI_MODSEQ },
	};
	for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (strcasecmp(name, simple[i].name) == 0)
			return item_add(s, simple[i].kind) != NULL ? 0 : -1;
	/* RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER],
	 * RFC822.TEXT = BODY[TEXT] with their own response names. */
	struct fetch_item *it;
	if (strcasecmp(name, "RFC822") == 0) {
		if ((it = item_add(s, FI_SECTION)) == NULL)
			return -1;
		it->sec.kind = MAIL_SECTION_ALL;
		it->label = "RFC822";
		return 0;
	}
	if (strcasecmp(name, "RFC822.HEADER") == 0) {
		if ((it = item_add(s, FI_SECTION)) == NULL)
			return -1;
		it->sec.kind = MAIL_SECTION_HEADER;
		it->peek = true;
		it->label = "RFC822.HEADER";
		return 0;
	}
	if (strcasecmp(name, "RFC822.TEXT") == 0) {
		if ((it = item_add(s, FI_SECTION)) == NULL)
			return -1;
		it->sec.kind = MAIL_SECTION_TEXT;
		it->label = "RFC822.TEXT";
		return 0;
	}
	return -1;
}

/* fetch-att =/ "BODY" [".PEEK"] section [partial]
 * section = "[" [section-spec] "]"
 * section-spec = section-msgtext / (section-part ["." section-text]) */
static int add_section(struct imap_session *s, const struct imap_arg *a,
		       const char **error_r)
{
	bool peek;
	enum fetch_kind kind = FI_SECTION;
	if (strcasecmp(a->str, "BODY") == 0)
		peek = false;
	else if (strcasecmp(a->str, "BODY.PEEK") == 0)
		peek = true;
	else if (strcasecmp(a->str, "BINARY") == 0) {
		peek = false;
		kind = FI_BINARY;
	} else if (strcasecmp(a->str, "BINARY.PEEK") == 0) {
		peek = true;
		kind = FI_BINARY;
	} else if (strcasecmp(a->str, "BINARY.SIZE") == 0) {
		peek = true;
		kind = FI_BINARY_SIZE;
	} else {
		*error_r = "Unknown FETCH section item";
		return -1;
	}
	struct fetch_item *it = item_add(s, kind);
	if (it == NULL) {
		*error_r = "Too many FETCH items";
		return -1;
	}
	it->peek = peek;
	const char *text = "";
	size_t tlen = 0;
	if (a->list_count > 0) {
		if (a->list[0].type != IMAP_ARG_ATOM) {
			*error_r = "Invalid section";
			return -1;
		}
		text = a->list[0].str;
		tlen = a->list[0].len;
	}
	if (mail_section_parse(text, tlen, &it->sec, error_r) < 0)
		return -1;
	if (kind != FI_SECTION) {
		/* RFC 3516: section-binary = "[" [section-part] "]" */
		if (it->sec.kind != MAIL_SECTION_ALL || a->list_count > 1 ||
		    (kind == FI_BINARY_SIZE && a->has_partial)) {
			*error_r = "BINARY takes only a part number";
			return -1;
		}
		char label[16 + 4 * MAIL_SECTION_MAX_PARTS * 11];
		size_t at = (size_t)snprintf(label, sizeof(label), "%s[",
					     kind == FI_BINARY ? "BINARY" : "BINARY.SIZE");
		for (unsigned int i = 0; i < it->sec.n_part; i++)
			at += (size_t)snprintf(label + at, sizeof(label) - at, "%s%u",
					       i ? "." : "", it->sec.part[i]);
		snprintf(label + at, sizeof(label) - at, "]");
		it->label = cmd_strndup(s, label, strlen(label));
		if (it->label == NULL) {
			*error_r = "Out of memory";
			return -1;
		}
		if (a->has_partial) {
			it->partial = true;
			it->off = a->partial_offset;
			it->size = a->partial_size;
		}
		return 0;
	}
	bool fields = it->sec.kind == MAIL_SECTION_HEADER_FIELDS ||
		      it->sec.kind == MAIL_SECTION_HEADER_FIELDS_NOT;
	if (fields != (a->list_count == 2) || a->list_count > 2) {
		*error_r = fields ? "HEADER.FIELDS needs a list of field names"
				  : "Unexpected data in section";
		return -1;
	}
	struct pn_buf label;
	pn_buf_init(&label, 64 * 1024);
	int r = pn_buf_append_str(&label, "BODY[");
	for (size_t i = 0; i < tlen && r == 0; i++) {
		char c = text[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 32);
		r = pn_buf_append(&label, &c, 1);
	}
	if (fields) {
		const struct imap_arg *l = &a->list[1];
		if (l->type != IMAP_ARG_LIST || l->list_count == 0 || l->list_count > 1000) {
			pn_buf_free(&label);
			*error_r = "HEADER.FIELDS needs a list of field names";
			return -1;
		}
		it->fields = cmd_alloc(s, l->list_count * sizeof(char *));
		if (it->fields == NULL)
			r = -1;
		if (r == 0)
			r = pn_buf_append_str(&label, " (");
		for (size_t i = 0; i < l->list_count && r == 0; i++) {
			const char *f;
			size_t flen;
			if (!imap_arg_get_astring(&l->list[i], &f, &flen) || flen == 0 ||
			    !is_atom_safe(f, flen)) {
				pn_buf_free(&label);
				*error_r = "Invalid header field name";
				return -1;
			}
			char *copy = cmd_strndup(s, f, flen);
			if (copy == NULL) {
				r = -1;
				break;
			}
			for (char *c = copy; *c; c++)
				if (*c >= 'a' && *c <= 'z')
					*c = (char)(*c - 32);
			it->fields[it->n_fields++] = copy;
			r = pn_buf_printf(&label, "%s%s", i ? " " : "", copy);
		}
		if (r == 0)
			r = pn_buf_append_str(&label, ")");
	}
	if (r == 0)
		r = pn_buf_append_str(&label, "]");
	if (r == 0) {
		it->label = cmd_strndup(s, (const char *)pn_buf_rptr(&label), pn_buf_len(&label));
		if (it->label == NULL)
			r = -1;
	}
	pn_buf_free(&label);
	if (r < 0) {
		*error_r = "Section too long";
		return -1;
	}
	if (a->has_partial) {
		it->partial = true;
		it->off = a->partial_offset;
		it->size = a->partial_size;
	}
	return 0;
}

static int add_item(struct imap_session *s, const struct imap_arg *a,
		    const char **error_r)
{
	if (a->type == IMAP_ARG_SECTION)
		return add_section(s, a, error_r);
	if (a->type != IMAP_ARG_ATOM || add_simple(s, a->str) < 0) {
		*error_r = s->fetch_n >= FETCH_MAX_ITEMS ? "Too many FETCH items"
			: "Unknown FETCH item";
		return -1;
	}
	return 0;
}

/* fetch = "FETCH" SP sequence-set SP ("ALL" / "FULL" / "FAST" /
 *         fetch-att / "(" fetch-att *(SP fetch-att) ")") */
void cmd_fetch(struct imap_session *s, const struct imap_arg *args)
{
	const char *error = NULL;
	uint32_t *uids;
	size_t n;

	if (args[0].type == IMAP_ARG_EOL || args[1].type == IMAP_ARG_EOL ||
	    (args[2].type != IMAP_ARG_EOL &&
	     (args[2].type != IMAP_ARG_LIST || args[3].type != IMAP_ARG_EOL))) {
		cmd_done(s, "BAD", "Expected FETCH sequence-set items");
		return;
	}
	s->cmd = CMD_FETCH;
	/* RFC 7162 3.1.4.1: fetch-modifier = "CHANGEDSINCE" SP mod-sequence-valzer */
	if (args[2].type == IMAP_ARG_LIST) {
		const struct imap_arg *m = args[2].list;
		if (args[2].list_count != 2 || !imap_arg_atom_equals(&m[0], "CHANGEDSINCE") ||
		    m[1].type != IMAP_ARG_ATOM ||
		    imap_parse_number64(m[1].str, m[1].len, &s->fetch_changedsince) < 0) {
			cmd_done(s, "BAD", "Expected FETCH modifier (CHANGEDSINCE modseq)");
			return;
		}
		if (!condstore_enable(s))
			return;
		s->fetch_changedsince_set = true;
	}
	s->fetch_items = cmd_alloc(s, FETCH_MAX_ITEMS * sizeof(struct fetch_item));
	if (s->fetch_items == NULL) {
		cmd_done(s, "NO", "[SERVERBUG] Out of memory");
		return;
	}
	const struct imap_arg *it = &args[1];
	int r = 0;
	if (it->type == IMAP_ARG_ATOM && (imap_arg_atom_equals(it, "ALL") ||
					  imap_arg_atom_equals(it, "FAST") ||
					  imap_arg_atom_equals(it, "FULL"))) {
		/* RFC 3501 6.4.5 macros. */
		r = add_simple(s, "FLAGS") | add_simple(s, "INTERNALDATE") |
		    add_simple(s, "RFC822.SIZE");
		if (!imap_arg_atom_equals(it, "FAST"))
			r |= add_simple(s, "ENVELOPE");
		if (imap_arg_atom_equals(it, "FULL"))
			r |= add_simple(s, "BODY");
	} else if (it->type == IMAP_ARG_LIST) {
		if (it->list_count == 0) {
			cmd_done(s, "BAD", "Empty FETCH item list");
			return;
		}
		for (size_t i = 0; i < it->list_count && r == 0; i++)
			r = add_item(s, &it->list[i], &error);
	} else {
		r = add_item(s, it, &error);
	}
	if (r != 0) {
		cmd_done(s, "BAD", "%s", error != NULL ? error : "Invalid FETCH items");
		return;
	}
	if (resolve_set(s, &args[0], s->uid_cmd, &uids, &n) < 0)
		return;
	unsigned int need = 0;
	bool has_flags = false;
	for (size_t i = 0; i < s->fetch_n; i++) {
		struct fetch_item *f = &s->fetch_items[i];
		switch (f->kind) {
		case FI_UID: break;
		case FI_MODSEQ: need |= IMAP_NEED_MODSEQ; break;
		case FI_FLAGS: need |= IMAP_NEED_FLAGS; has_flags = true; break;
		case FI_INTERNALDATE: need |= IMAP_NEED_INTERNALDATE; break;
		case FI_SIZE: need |= IMAP_NEED_SIZE; break;
		case FI_ENVELOPE: need |= IMAP_NEED_ENVELOPE; break;
		case FI_BODYSTRUCTURE: need |= IMAP_NEED_BODYSTRUCTURE; break;
		case FI_BODY: need |= IMAP_NEED_MESSAGE; break;
		case FI_SECTION:
		case FI_BINARY:
		case FI_BINARY_SIZE:
			need |= IMAP_NEED_MESSAGE;
			if (!f->peek && !s->readonly)
				s->fetch_set_seen = true;
			break;
		}
	}
	/* \Seen changes are shown: FLAGS joins the response. */
	if (s->fetch_set_seen && !has_flags) {
		item_add(s, FI_FLAGS);
		need |= IMAP_NEED_FLAGS;
	}
	/* MODSEQ is asked for (which enables CONDSTORE), implied by
	 * CHANGEDSINCE, and follows flag changes once CONDSTORE is on. */
	bool has_modseq = (need & IMAP_NEED_MODSEQ) != 0;
	if (has_modseq && !condstore_enable(s))
		return;
	if (!has_modseq && (s->fetch_changedsince_set ||
			    (s->condstore && !s->nomodseq && s->fetch_set_seen))) {
		item_add(s, FI_MODSEQ);
		need |= IMAP_NEED_MODSEQ;
	}
	if (n == 0) {
		cmd_done(s, "OK", "%sFETCH completed", s->uid_cmd ? "UID " : "");
		return;
	}
	s->fetch_need = need;
	s->req.uids = uids;
	s->req.uid_count = n;
	if (s->fetch_set_seen) {
		static const char *const seen[] = { "\\Seen" };
		s->req.store_op = IMAP_STORE_ADD;
		s->req.flags = seen;
		s->req.flag_count = 1;
		s->req.silent = true;
		cmd_request(s, IMAP_REQ_STORE);
		return;
	}
	s->req.need = need;
	cmd_request(s, IMAP_REQ_MESSAGES);
}

static int out_section(struct imap_session *s, const struct fetch_item *f,
		       struct mail_message **msg, const struct imap_message_data *md,
		       const char **error_r)
{
	if (*msg == NULL && mail_message_parse(md->data, md->data_len, NULL, msg, error_r) < 0)
		return -1;
	struct pn_buf tmp;
	struct mail_section_data d;
	pn_buf_init(&tmp, s->set.max_output);
	int r = mail_section_locate(*msg, &f->sec, (const char *const *)f->fields,
				    f->n_fields, &tmp, &d);
	if (r < 0) {
		pn_buf_free(&tmp);
		*error_r = "section too large";
		return -1;
	}
	const uint8_t *p = NULL;
	size_t len = 0;
	if (r == 1) {
		p = d.synthesized ? pn_buf_rptr(&tmp) : md->data + d.off;
		len = d.synthesized ? pn_buf_len(&tmp) : d.len;
	}
	out_str(s, f->label);
	if (f->partial) {
		out_printf(s, "<%llu>", (unsigned long long)f->off);
		if (f->off >= len) {
			len = 0;
		} else {
			p += f->off;
			len -= (size_t)f->off;
			if (f->size < len)
				len = (size_t)f->size;
		}
	}
	out_printf(s, " {%zu}\r\n", len);
	if (len > 0)
		out_mem(s, p, len);
	pn_buf_free(&tmp);
	return 0;
}

/* The decoded content of a BINARY section into tmp (or a range of the
 * message). Returns 1, 0 for a part that does not exist, -1 with
 * *unknown_cte for a transfer encoding we cannot decode or when tmp is
 * full. */
static int binary_data(const struct mail_message *msg, const struct mail_section *sec,
		       struct pn_buf *tmp, const uint8_t **p_r, size_t *len_r,
		       bool *unknown_cte)
{
	*unknown_cte = false;
	if (sec->n_part == 0) {
		*p_r = msg->data;
		*len_r = msg->size;
		return 1;
	}
	const struct mail_part *part = mail_part_lookup(msg, sec->part, sec->n_part);
	if (part == NULL)
		return 0;
	const uint8_t *body = msg->data + part->body_off;
	if ((part->flags & MAIL_PART_MULTIPART) == 0) {
		switch (part->cte) {
		case MAIL_CTE_BASE64:
			if (mail_base64_decode(body, part->body_size, tmp) < 0)
				return -1;
			*p_r = pn_buf_rptr(tmp);
			*len_r = pn_buf_len(tmp);
			return 1;
		case MAIL_CTE_QP:
			if (mail_qp_decode(body, part->body_size, tmp) < 0)
				return -1;
			*p_r = pn_buf_rptr(tmp);
			*len_r = pn_buf_len(tmp);
			return 1;
		case MAIL_CTE_OTHER:
			*unknown_cte = true;
			return -1;
		default:
			break;
		}
	}
	*p_r = body;
	*len_r = part->body_size;
	return 1;
}

static int out_binary(struct imap_session *s, const struct fetch_item *f,
		      struct mail_message **msg, const struct imap_message_data *md,
		      const char **error_r)
{
	if (*msg == NULL && mail_message_parse(md->data, md->data_len, NULL, msg, error_r) < 0)
		return -1;
	struct pn_buf tmp;
	const uint8_t *p = NULL;
	size_t len = 0;
	bool unknown;
	pn_buf_init(&tmp, s->set.max_output);
	int r = binary_data(*msg, &f->sec, &tmp, &p, &len, &unknown);
	out_str(s, f->label);
	if (r < 0 && unknown) {
		/* RFC 3516 section 4.3: the command ends with NO [UNKNOWN-CTE]. */
		s->step = 2;
		out_str(s, f->kind == FI_BINARY_SIZE ? " 0" : " NIL");
		pn_buf_free(&tmp);
		return 0;
	}
	if (r < 0) {
		pn_buf_free(&tmp);
		*error_r = "section too large";
		return -1;
	}
	if (r == 0)
		len = 0;
	if (f->kind == FI_BINARY_SIZE) {
		out_printf(s, " %zu", len);
		pn_buf_free(&tmp);
		return 0;
	}
	if (f->partial) {
		out_printf(s, "<%llu>", (unsigned long long)f->off);
		if (f->off >= len) {
			len = 0;
		} else {
			p += f->off;
			len -= (size_t)f->off;
			if (f->size < len)
				len = (size_t)f->size;
		}
	}
	/* literal8 when the data holds NUL (RFC 3516 section 4.2). */
	out_printf(s, " %s{%zu}\r\n", len > 0 && memchr(p, '\0', len) != NULL ? "~" : "", len);
	if (len > 0)
		out_mem(s, p, len);
	pn_buf_free(&tmp);
	return 0;
}

static int out_fetch(struct imap_session *s, uint32_t seq,
		     const struct imap_message_data *md, const char **error_r)
{
	struct mail_message *msg = NULL;
	int ret = 0;
	bool sp = false;

	out_printf(s, "* %u FETCH (", seq);
	if (s->uid_cmd) {
		out_printf(s, "UID %u", md->uid);
		sp = true;
	}
	for (size_t i = 0; i < s->fetch_n && ret == 0; i++) {
		const struct fetch_item *f = &s->fetch_items[i];
		if (f->kind == FI_UID && s->uid_cmd)
			continue;
		if (sp)
			out_str(s, " ");
		sp = true;
		switch (f->kind) {
		case FI_UID:
			out_printf(s, "UID %u", md->uid);
			break;
		case FI_FLAGS:
			out_str(s, "FLAGS ");
			out_flags(s, md->flags, md->flag_count);
			break;
		case FI_INTERNALDATE: {
			char date[MAIL_IMAP_DATETIME_LEN + 1];
			mail_imap_datetime_format(md->internaldate, md->internaldate_tz, date);
			out_printf(s, "INTERNALDATE \"%s\"", date);
			break;
		}
		case FI_SIZE:
			out_printf(s, "RFC822.SIZE %llu", (unsigned long long)md->size);
			break;
		case FI_MODSEQ:
			out_printf(s, "MODSEQ (%llu)", (unsigned long long)md->modseq);
			break;
		case FI_ENVELOPE:
		case FI_BODYSTRUCTURE:
		case FI_BODY: {
			const char *cached = f->kind == FI_ENVELOPE ? md->envelope :
				f->kind == FI_BODYSTRUCTURE ? md->bodystructure : NULL;
			out_str(s, f->kind == FI_ENVELOPE ? "ENVELOPE " :
				f->kind == FI_BODY ? "BODY " : "BODYSTRUCTURE ");
			if (cached != NULL) {
				out_str(s, cached);
				break;
			}
			if (md->data == NULL) {
				*error_r = "ENVELOPE/BODYSTRUCTURE or message data missing";
				ret = -1;
				break;
			}
			if (msg == NULL &&
			    mail_message_parse(md->data, md->data_len, NULL, &msg, error_r) < 0) {
				ret = -1;
				break;
			}
			struct pn_buf tmp;
			pn_buf_init(&tmp, s->set.max_output);
			int r = f->kind == FI_ENVELOPE ? mail_envelope_write(msg, NULL, &tmp)
				: mail_bodystructure_write(msg, &tmp, f->kind == FI_BODYSTRUCTURE);
			if (r < 0) {
				*error_r = "structure too large";
				ret = -1;
			} else {
				out_mem(s, pn_buf_rptr(&tmp), pn_buf_len(&tmp));
			}
			pn_buf_free(&tmp);
			break;
		}
		case FI_SECTION:
			if (md->data == NULL) {
				*error_r = "message data missing";
				ret = -1;
				break;
			}
			ret = out_section(s, f, &msg, md, error_r);
			break;
		case FI_BINARY:
		case FI_BINARY_SIZE:
			if (md->data == NULL) {
				*error_r = "message data missing";
				ret = -1;
				break;
			}
			ret = out_binary(s, f, &msg, md, error_r);
			break;
		}
	}
	out_str(s, ")\r\n");
	mail_message_free(&msg);
	return ret;
}

int fetch_message(struct imap_session *s, const struct imap_message_data *md,
		  const char **error_r)
{
	uint32_t seq = view_seq(s, md->uid);
	if (seq == 0)
		return 0; /* expunged meanwhile, the client was not told */
	for (size_t i = 0; i < md->flag_count; i++) {
		const char *f = md->flags[i];
		if (f == NULL || *f == '\0' || strpbrk(f, " ()\r\n\"{") != NULL) {
			*error_r = "invalid flag";
			return -1;
		}
	}
	if (s->req.type == IMAP_REQ_STORE) {
		if (s->req.silent)
			return 0;
		out_printf(s, "* %u FETCH (", seq);
		if (s->uid_cmd)
			out_printf(s, "UID %u ", md->uid);
		out_str(s, "FLAGS ");
		out_flags(s, md->flags, md->flag_count);
		/* RFC 7162 3.1: with CONDSTORE on, flag changes carry MODSEQ. */
		if (s->condstore && !s->nomodseq && md->modseq > 0)
			out_printf(s, " MODSEQ (%llu)", (unsigned long long)md->modseq);
		out_str(s, ")\r\n");
		return 0;
	}
	/* CHANGEDSINCE: only messages changed after the given MODSEQ. */
	if (s->fetch_changedsince_set && md->modseq <= s->fetch_changedsince)
		return 0;
	size_t mark = pn_buf_len(&s->out);
	if (out_fetch(s, seq, md, error_r) < 0) {
		/* Drop the partial response. */
		s->out.end = s->out.start + mark;
		return -1;
	}
	return 0;
}

/* --- STORE ------------------------------------------------------------- */

/* store = "STORE" SP sequence-set SP store-att-flags
 * store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP
 *                   (flag-list / (flag *(SP flag))) */
void cmd_store(struct imap_session *s, const struct imap_arg *args)
{
	const char *item;
	uint32_t *uids;
	size_t n;

	s->cmd = CMD_STORE;
	if (args[0].type == IMAP_ARG_EOL) {
		cmd_done(s, "BAD", "Expected STORE sequence-set item flags");
		return;
	}
	/* RFC 7162 3.1.3: store-modifier = "UNCHANGEDSINCE" SP
	 * mod-sequence-valzer, in "(" ... ")" after the set. */
	const struct imap_arg *a = &args[1];
	if (a->type == IMAP_ARG_LIST) {
		const struct imap_arg *m = a->list;
		if (a->list_count != 2 || !imap_arg_atom_equals(&m[0], "UNCHANGEDSINCE") ||
		    m[1].type != IMAP_ARG_ATOM ||
		    imap_parse_number64(m[1].str, m[1].len, &s->req.unchangedsince) < 0) {
			cmd_done(s, "BAD", "Expected STORE modifier (UNCHANGEDSINCE modseq)");
			return;
		}
		if (!condstore_enable(s))
			return;
		s->req.has_unchangedsince = true;
		a++;
	}
	if (a[0].type == IMAP_ARG_EOL || a[1].type == IMAP_ARG_EOL) {
		cmd_done(s, "BAD", "Expected STORE sequence-set item flags");
		return;
	}
	if (!imap_arg_get_atom(&a[0], &item)) {
		cmd_done(s, "BAD", "Expected FLAGS, +FLAGS or -FLAGS");
		return;
	}
	enum imap_store_op op = IMAP_STORE_REPLACE;
	if (item[0] == '+') {
		op = IMAP_STORE_ADD;
		item++;
	} else if (item[0] == '-') {
		op = IMAP_STORE_REMOVE;
		item++;
	}
	bool silent;
	if (strcasecmp(item, "FLAGS") == 0)
		silent = false;
	else if (strcasecmp(item, "FLAGS.SILENT") == 0)
		silent = true;
	else {
		cmd_done(s, "BAD", "Expected FLAGS, +FLAGS or -FLAGS");
		return;
	}
	struct imap_arg list = { .type = IMAP_ARG_LIST };
	const struct imap_arg *fl = &a[1];
	if (a[1].type != IMAP_ARG_LIST) {
		size_t k = 1;
		while (a[k].type != IMAP_ARG_EOL)
			k++;
		list.list = &a[1];
		list.list_count = k - 1;
		fl = &list;
	} else if (a[2].type != IMAP_ARG_EOL) {
		cmd_done(s, "BAD", "Unexpected arguments after the flag list");
		return;
	}
	if (parse_flags(s, fl, &s->req.flags, &s->req.flag_count, false) < 0)
		return;
	if (resolve_set(s, &args[0], s->uid_cmd, &uids, &n) < 0)
		return;
	if (s->readonly) {
		cmd_done(s, "NO", "Mailbox is read-only");
		return;
	}
	if (n == 0) {
		cmd_done(s, "OK", "%sSTORE completed", s->uid_cmd ? "UID " : "");
		return;
	}
	s->req.uids = uids;
	s->req.uid_count = n;
	s->req.store_op = op;
	s->req.silent = silent;
	cmd_request(s, IMAP_REQ_STORE);
}

/* --- COPY / MOVE --------------------------------------------------------- */

/* RFC 3501 9: copy = "COPY" SP sequence-set SP mailbox
 * RFC 6851: move = "MOVE" SP sequence-set SP mailbox */
void cmd_copy(struct imap_session *s, const struct imap_arg *args, bool move)
{
	uint32_t *uids;
	size_t n;

	if (args[0].type == IMAP_ARG_EOL || args[1].type == IMAP_ARG_EOL ||
	    args[2].type != IMAP_ARG_EOL) {
		cmd_done(s, "BAD", "Expected %s sequence-set mailbox", move ? "MOVE" : "COPY");
		return;
	}
	s->cmd = CMD_COPY;
	const char *name = mailbox_arg(s, &args[1]);
	if (name == NULL)
		return;
	if (resolve_set(s, &args[0], s->uid_cmd, &uids, &n) < 0)
		return;
	if (move && s->readonly) {
		cmd_done(s, "NO", "Mailbox is read-only");
		return;
	}
	if (n == 0) {
		cmd_done(s, "OK", "%s%s completed", s->uid_cmd ? "UID " : "", move ? "MOVE" : "COPY");
		return;
	}
	s->req.mailbox = name;
	s->req.uids = uids;
	s->req.uid_count = n;
	s->req.move = move;
	cmd_request(s, IMAP_REQ_COPY);
}

/* RFC 4315 uid-set: ranges of consecutive UIDs joined by ",". */
void uidset_str(const uint32_t *uids, size_t n, struct pn_buf *b)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && uids[j + 1] == uids[j] + 1)
			j++;
		if (j == i)
			pn_buf_printf(b, "%s%u", i ? "," : "", uids[i]);
		else
			pn_buf_printf(b, "%s%u:%u", i ? "," : "", uids[i], uids[j]);
		i = j + 1;
	}
}

int imap_session_copy_result(struct imap_session *s, enum imap_result result,
			     uint32_t uidvalidity, const uint32_t *src_uids,
			     const uint32_t *dst_uids, size_t count,
			     const char **error_r)
{
	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_COPY) {
		*error_r = "no COPY request outstanding";
		return -1;
	}
	const char *name = s->req.move ? "MOVE" : "COPY";
	if (result != IMAP_RESULT_OK) {
		cmd_done(s, "NO", "%s", result_text(result) + 3);
		return 0;
	}
	struct pn_buf code;
	pn_buf_init(&code, 16u * 1024 * 1024);
	if (count > 0 && uidvalidity != 0) {
		pn_buf_printf(&code, "[COPYUID %u ", uidvalidity);
		uidset_str(src_uids, count, &code);
		pn_buf_append_str(&code, " ");
		uidset_str(dst_uids, count, &code);
		pn_buf_append_str(&code, "] ");
	}
	pn_buf_append(&code, "", 1);
	const char *text = (const char *)pn_buf_rptr(&code);
	if (s->req.move) {
		/* RFC 6851 section 4.3: COPYUID in an untagged OK, then the
		 * EXPUNGEs, then the tagged OK. */
		if (text[0] != '\0')
			out_printf(s, "* OK %sMoved\r\n", text);
		/* Every message asked for is gone from here, whether or not
		 * the daemon could say where each one went. */
		view_expunge(s, s->req.uids, s->req.uid_count);
		cmd_done(s, "OK", "%s%s completed", s->uid_cmd ? "UID " : "", name);
	} else {
		cmd_done(s, "OK", "%s%s%s completed", text, s->uid_cmd ? "UID " : "", name);
	}
	pn_buf_free(&code);
	return 0;
}

/* --- EXPUNGE / CLOSE / UNSELECT ------------------------------------------ */

/* RFC 3501 9: expunge = "EXPUNGE"
 * RFC 4315: uid-expunge = "UID" SP "EXPUNGE" SP sequence-set */
void cmd_expunge(struct imap_session *s, const struct imap_arg *set)
{
	s->cmd = CMD_EXPUNGE;
	if (set != NULL && resolve_set(s, set, true, (uint32_t **)&s->req.uids,
				       &s->req.uid_count) < 0)
		return;
	if (s->readonly) {
		cmd_done(s, "NO", "Mailbox is read-only");
		return;
	}
	if (set != NULL && s->req.uid_count == 0) {
		cmd_done(s, "OK", "UID EXPUNGE completed");
		return;
	}
	cmd_request(s, IMAP_REQ_EXPUNGE);
}

void cmd_close(struct imap_session *s, bool expunge)
{
	if (expunge && !s->readonly) {
		s->cmd = CMD_CLOSE;
		s->req.silent = true;
		cmd_request(s, IMAP_REQ_EXPUNGE);
		return;
	}
	view_clear(s);
	s->state = IMAP_STATE_AUTHENTICATED;
	cmd_done(s, "OK", "%s completed", expunge ? "CLOSE" : "UNSELECT");
}

int imap_session_expunge_result(struct imap_session *s, enum imap_result result,
				const uint32_t *uids, size_t count,
				const char **error_r)
{
	if (s->req_state != REQ_WAIT || s->req.type != IMAP_REQ_EXPUNGE) {
		*error_r = "no EXPUNGE request outstanding";
		return -1;
	}
	if (s->cmd == CMD_CLOSE) {
		/* RFC 3501 6.4.2: no untagged EXPUNGE; back to AUTHENTICATED
		 * whether or not the expunge worked. */
		view_clear(s);
		s->state = IMAP_STATE_AUTHENTICATED;
		cmd_done(s, "OK", "CLOSE completed");
		return 0;
	}
	if (result != IMAP_RESULT_OK) {
		cmd_done(s, "NO", "%s", result_text(result) + 3);
		return 0;
	}
	view_expunge(s, uids, count);
	cmd_done(s, "OK", "%sEXPUNGE completed", s->uid_cmd ? "UID " : "");
	return 0;
}

int imap_session_message(struct imap_session *s,
			 const struct imap_message_data *md, const char **error_r)
{
	if (s->req_state != REQ_WAIT ||
	    (s->req.type != IMAP_REQ_MESSAGES && s->req.type != IMAP_REQ_STORE)) {
		*error_r = "no MESSAGES or STORE request outstanding";
		return -1;
	}
	if (s->out_overflow || pn_buf_len(&s->out) > s->set.max_output / 2) {
		*error_r = "output buffer full: drain SENDs first";
		return -1;
	}
	if (s->cmd == CMD_SEARCH)
		return search_message(s, md, error_r);
	return fetch_message(s, md, error_r);
}
