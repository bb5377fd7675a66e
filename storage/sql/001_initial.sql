-- Postern mail store, schema version 1.
--
-- Applied by `posternctl migrate` (storage/migrate.c) in one transaction; the
-- migrator itself creates schema_version(version, name, applied_at) and
-- records this file there. Objects are created unqualified, in the first
-- schema of search_path.
--
-- Conventions
-- * Every per-account table carries account_id first in its primary key, so
--   the schema can later be distributed by account (for example with Citus).
--   No function here joins rows of two different accounts.
-- * Addresses are compared case-insensitively through lower(); domain names
--   are stored in lower-case ASCII (an IDN as its A-label, xn--...).
-- * Sizes are bytes. A NULL limit means "no limit".
-- * System flags are a bit field in messages.flags:
--     1 \Seen   2 \Answered   4 \Flagged   8 \Deleted   16 \Draft
--   Keywords are in messages.keywords, compared case-insensitively.
-- * UIDs are allocated by UPDATE of mailboxes.uidnext inside the transaction
--   that inserts the messages. The row lock is held until COMMIT, so appends
--   to one mailbox from any number of nodes commit in UID order and a reader
--   never sees UID n+1 before UID n (which IMAP could not repair: a new
--   message must get a higher sequence number than every message already
--   announced). A UID allocated by a transaction that rolls back was never
--   visible to anybody, and uidnext rolls back with it; a UID that was ever
--   committed is never handed out again, because uidnext only grows.
-- * Row-lock order, followed by every function below so that concurrent
--   deliveries, copies, moves and expunges never deadlock:
--     mailboxes (by account_id, id) -> account_usage (by account_id)
--       -> mail_blobs (by sha256) -> tenant_usage (by tenant_id, shard)
--   A caller that combines several functions in one transaction may break
--   this order; PostgreSQL then reports 40P01 and the transaction is retried.
-- * Usage counters (account_usage, tenant_usage) and blob reference counts
--   are only changed by these functions, under row locks, in the same
--   transaction as the rows they count: they always match exactly.
-- * Errors raised by the functions use SQLSTATE class PN:
--     PN001 unknown account or mailbox     PN002 UID space of a mailbox used up
--     PN003 quota exceeded (copy)          PN004 blob not stored: send the body
--     PN005 bad argument                   PN006 alias chain too deep

-- Tenants: a hosting customer owning domains and accounts.
CREATE TABLE tenants (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name text NOT NULL CHECK (name <> '' AND length(name) <= 255),
	quota_bytes bigint CHECK (quota_bytes >= 0),
	quota_messages bigint CHECK (quota_messages >= 0),
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_name_key ON tenants (lower(name));

-- Usage per tenant, split into 16 shards (account_id % 16) so that
-- deliveries to different accounts of one big tenant do not all queue on one
-- row lock. The tenant's usage is the sum of its shards (tenant_usage_total).
CREATE TABLE tenant_usage (
	tenant_id bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
	shard smallint NOT NULL CHECK (shard >= 0 AND shard < 16),
	bytes bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
	messages bigint NOT NULL DEFAULT 0 CHECK (messages >= 0),
	PRIMARY KEY (tenant_id, shard)
);

CREATE FUNCTION tenant_shard(p_account_id bigint) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$ SELECT (p_account_id % 16)::smallint $$;

CREATE VIEW tenant_usage_total AS
	SELECT tenant_id, sum(bytes)::bigint AS bytes, sum(messages)::bigint AS messages
	FROM tenant_usage GROUP BY tenant_id;

CREATE FUNCTION tenants_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO tenant_usage (tenant_id, shard)
		SELECT NEW.id, s FROM generate_series(0, 15) AS s;
	RETURN NULL;
END $$;
CREATE TRIGGER tenants_after_insert AFTER INSERT ON tenants
	FOR EACH ROW EXECUTE FUNCTION tenants_after_insert();

-- Domains: each owned by one tenant; the name is unique cluster-wide. A
-- catch-all is an alias whose source is '@domain' (see aliases).
CREATE TABLE domains (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id bigint NOT NULL REFERENCES tenants (id),
	name text NOT NULL UNIQUE
		CHECK (name <> '' AND name = lower(name) AND length(name) <= 253),
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (id, tenant_id)
);
CREATE INDEX domains_tenant ON domains (tenant_id);

-- Accounts: a mailbox owner who can log in. address is kept equal to
-- local_part@domain by a trigger; enabled = false refuses logins only (mail
-- is still accepted). password_hash is a crypt(3) string, optionally with a
-- Dovecot {SCHEME} prefix (see storage/include/postern/store-password.h).
CREATE TABLE accounts (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id bigint NOT NULL,
	domain_id bigint NOT NULL,
	local_part text NOT NULL CHECK (local_part <> '' AND length(local_part) <= 64),
	address text NOT NULL CHECK (length(address) <= 254),
	password_hash text,
	enabled boolean NOT NULL DEFAULT true,
	quota_bytes bigint CHECK (quota_bytes >= 0),
	quota_messages bigint CHECK (quota_messages >= 0),
	created_at timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (domain_id, tenant_id) REFERENCES domains (id, tenant_id)
);
CREATE UNIQUE INDEX accounts_address_key ON accounts (lower(address));
CREATE INDEX accounts_tenant ON accounts (tenant_id);
CREATE INDEX accounts_domain ON accounts (domain_id);

-- Aliases: one row per (source, destination). source is 'local@domain' or,
-- for the domain's catch-all, '@domain' (local_part NULL). A destination is
-- any address, local or remote. Plus-addressing (user+tag@domain) is not
-- stored: resolve_recipient() strips the tag.
CREATE TABLE aliases (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id bigint NOT NULL,
	domain_id bigint NOT NULL,
	local_part text CHECK (local_part <> '' AND length(local_part) <= 64),
	source text NOT NULL,
	destination text NOT NULL
		CHECK (length(destination) <= 254 AND strpos(destination, '@') > 1),
	created_at timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (domain_id, tenant_id) REFERENCES domains (id, tenant_id)
);
CREATE UNIQUE INDEX aliases_pair_key ON aliases (lower(source), lower(destination));
CREATE INDEX aliases_domain ON aliases (domain_id);

CREATE FUNCTION address_set_from_domain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
	v_domain text;
BEGIN
	SELECT d.name INTO v_domain FROM domains d WHERE d.id = NEW.domain_id;
	IF TG_TABLE_NAME = 'accounts' THEN
		NEW.address := NEW.local_part || '@' || v_domain;
	ELSE
		NEW.source := coalesce(NEW.local_part, '') || '@' || v_domain;
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER accounts_address BEFORE INSERT OR UPDATE ON accounts
	FOR EACH ROW EXECUTE FUNCTION address_set_from_domain();
CREATE TRIGGER aliases_source BEFORE INSERT OR UPDATE ON aliases
	FOR EACH ROW EXECUTE FUNCTION address_set_from_domain();

-- Usage per account: bytes and number of messages in all its mailboxes
-- (every copy counts, also when the body is shared).
CREATE TABLE account_usage (
	account_id bigint PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
	bytes bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
	messages bigint NOT NULL DEFAULT 0 CHECK (messages >= 0)
);

-- UIDVALIDITY comes from one sequence, so a mailbox that is deleted and
-- created again under the same name always gets a new value (RFC 9051
-- 2.3.1.1); a rename keeps it.
CREATE SEQUENCE mailbox_uidvalidity_seq AS bigint MINVALUE 1 MAXVALUE 4294967295 NO CYCLE;

-- Mailboxes: the hierarchy is in the name, separator '/'. INBOX is always
-- spelled 'INBOX'. special_use holds one RFC 6154 attribute. uidnext is the
-- next UID to assign; 4294967296 means the UID space is used up.
CREATE TABLE mailboxes (
	account_id bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	id bigint GENERATED ALWAYS AS IDENTITY,
	name text COLLATE "C" NOT NULL CHECK (
		name <> '' AND length(name) <= 1024
		AND left(name, 1) <> '/' AND right(name, 1) <> '/'
		AND strpos(name, '//') = 0
		AND (upper(name) <> 'INBOX' OR name = 'INBOX')),
	special_use text CHECK (special_use IN
		('\All', '\Archive', '\Drafts', '\Flagged', '\Important', '\Junk', '\Sent', '\Trash')),
	subscribed boolean NOT NULL DEFAULT true,
	uidvalidity bigint NOT NULL DEFAULT nextval('mailbox_uidvalidity_seq')
		CHECK (uidvalidity BETWEEN 1 AND 4294967295),
	uidnext bigint NOT NULL DEFAULT 1 CHECK (uidnext BETWEEN 1 AND 4294967296),
	highestmodseq bigint NOT NULL DEFAULT 1 CHECK (highestmodseq >= 1),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, id),
	UNIQUE (account_id, name)
);

-- Message bodies, stored once per SHA-256 of the full message. refcount is
-- the number of messages rows plus outbound_queue rows that use the body;
-- the row is deleted when it drops to 0. body is NULL when the bytes live in
-- an external blob backend (for example a shared directory) under the hash.
CREATE TABLE mail_blobs (
	sha256 bytea PRIMARY KEY CHECK (length(sha256) = 32),
	size bigint NOT NULL CHECK (size >= 0),
	body bytea,
	refcount bigint NOT NULL DEFAULT 0 CHECK (refcount >= 0),
	created_at timestamptz NOT NULL DEFAULT now()
);

-- Messages in mailboxes. size equals the blob's size (RFC822.SIZE). The
-- cached columns are filled at delivery from the parsed message so that
-- FETCH, SORT and THREAD do not parse again: header_size (bytes up to and
-- including the empty line), envelope and bodystructure (IMAP syntax) and
-- selected header fields (decoded, for SORT/THREAD/SEARCH).
CREATE TABLE messages (
	account_id bigint NOT NULL,
	mailbox_id bigint NOT NULL,
	uid bigint NOT NULL CHECK (uid BETWEEN 1 AND 4294967295),
	modseq bigint NOT NULL CHECK (modseq >= 1),
	flags integer NOT NULL DEFAULT 0 CHECK (flags >= 0 AND flags < 32),
	keywords text[] NOT NULL DEFAULT '{}',
	internaldate timestamptz NOT NULL,
	saved_at timestamptz NOT NULL DEFAULT now(),
	size bigint NOT NULL CHECK (size >= 0),
	blob_sha256 bytea NOT NULL REFERENCES mail_blobs (sha256),
	header_size bigint,
	envelope text,
	bodystructure text,
	sent_date timestamptz,
	subject text,
	from_addr text,
	to_addr text,
	cc_addr text,
	message_id text,
	in_reply_to text,
	references_hdr text,
	PRIMARY KEY (account_id, mailbox_id, uid),
	FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id)
);
CREATE INDEX messages_modseq ON messages (account_id, mailbox_id, modseq);
CREATE INDEX messages_blob ON messages (blob_sha256);

-- Expunged UIDs with the MODSEQ of their expunge, for QRESYNC's VANISHED
-- (RFC 7162 3.2.10). Dropped together with the mailbox.
CREATE TABLE expunged_messages (
	account_id bigint NOT NULL,
	mailbox_id bigint NOT NULL,
	uid bigint NOT NULL,
	modseq bigint NOT NULL,
	expunged_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (account_id, mailbox_id, uid),
	FOREIGN KEY (account_id, mailbox_id) REFERENCES mailboxes (account_id, id)
		ON DELETE CASCADE
);
CREATE INDEX expunged_messages_modseq ON expunged_messages (account_id, mailbox_id, modseq);

-- Outbound queue, shared by any number of delivery workers. A worker claims
-- due rows with outbound_claim() (FOR UPDATE SKIP LOCKED, then a lease in
-- locked_by/locked_until, so a crashed worker's rows come back when the lease
-- ends), delivers, updates the recipients' status, then either sets
-- next_attempt_at/last_error and clears the lease, or calls outbound_finish().
CREATE TABLE outbound_queue (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id bigint NOT NULL REFERENCES tenants (id),
	account_id bigint REFERENCES accounts (id) ON DELETE SET NULL,
	sender text NOT NULL,                -- reverse-path; '' is the null sender
	blob_sha256 bytea NOT NULL REFERENCES mail_blobs (sha256),
	size bigint NOT NULL CHECK (size >= 0),
	envid text,                          -- RFC 3461 ENVID
	ret text CHECK (ret IN ('FULL', 'HDRS')), -- RFC 3461 RET
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL DEFAULT now() + interval '5 days',
	attempts integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	last_error text,
	locked_by text,
	locked_until timestamptz
);
CREATE INDEX outbound_queue_due ON outbound_queue (next_attempt_at, id);
CREATE INDEX outbound_queue_blob ON outbound_queue (blob_sha256);
CREATE INDEX outbound_queue_tenant ON outbound_queue (tenant_id);

CREATE TABLE outbound_recipients (
	queue_id bigint NOT NULL REFERENCES outbound_queue (id) ON DELETE CASCADE,
	rcpt_index integer NOT NULL,
	recipient text NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'deferred', 'delivered', 'failed')),
	notify text,                         -- RFC 3461 NOTIFY
	orcpt text,                          -- RFC 3461 ORCPT
	attempts integer NOT NULL DEFAULT 0,
	last_error text,
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (queue_id, rcpt_index)
);

-- A new account gets its usage row and the standard mailboxes.
CREATE FUNCTION accounts_after_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO account_usage (account_id) VALUES (NEW.id);
	INSERT INTO mailboxes (account_id, name, special_use) VALUES
		(NEW.id, 'INBOX', NULL),
		(NEW.id, 'Sent', '\Sent'),
		(NEW.id, 'Drafts', '\Drafts'),
		(NEW.id, 'Trash', '\Trash'),
		(NEW.id, 'Junk', '\Junk'),
		(NEW.id, 'Archive', '\Archive');
	RETURN NULL;
END $$;
CREATE TRIGGER accounts_after_insert AFTER INSERT ON accounts
	FOR EACH ROW EXECUTE FUNCTION accounts_after_insert();

-- Keyword sets: case-insensitive union (keeping the first spelling) and
-- difference, order of first appearance kept.
CREATE FUNCTION keywords_add(p_old text[], p_add text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(array_agg(k ORDER BY o), '{}') FROM (
		SELECT DISTINCT ON (lower(k)) k, o FROM (
			SELECT k, o FROM unnest(p_old) WITH ORDINALITY AS x (k, o)
			UNION ALL
			SELECT k, o + 2147483648 FROM unnest(p_add) WITH ORDINALITY AS y (k, o)
		) AS z ORDER BY lower(k), o
	) AS w
$$;

CREATE FUNCTION keywords_remove(p_old text[], p_remove text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(array_agg(k ORDER BY o), '{}')
	FROM unnest(p_old) WITH ORDINALITY AS x (k, o)
	WHERE lower(k) NOT IN (SELECT lower(r) FROM unnest(p_remove) AS r)
$$;

-- Takes p_count more references on a body, storing it first if it is new.
-- p_body NULL and p_external false: the body must already be stored (else
-- PN004). p_external true: the bytes live in an external backend, the row
-- keeps only hash and size. A stored size different from p_size is PN005.
CREATE FUNCTION blob_ref(p_sha256 bytea, p_size bigint, p_body bytea,
		p_external boolean, p_count bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	v_size bigint;
BEGIN
	IF p_count < 1 THEN
		RAISE EXCEPTION 'blob_ref: count % < 1', p_count USING ERRCODE = 'PN005';
	END IF;
	IF p_body IS NOT NULL AND (length(p_body) <> p_size OR sha256(p_body) <> p_sha256) THEN
		RAISE EXCEPTION 'body does not match its size or SHA-256' USING ERRCODE = 'PN005';
	END IF;
	IF p_body IS NULL AND NOT p_external THEN
		UPDATE mail_blobs b SET refcount = b.refcount + p_count
			WHERE b.sha256 = p_sha256 RETURNING b.size INTO v_size;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'blob % not stored', encode(p_sha256, 'hex')
				USING ERRCODE = 'PN004';
		END IF;
	ELSE
		INSERT INTO mail_blobs AS b (sha256, size, body, refcount)
			VALUES (p_sha256, p_size, p_body, p_count)
			ON CONFLICT (sha256) DO UPDATE SET refcount = b.refcount + EXCLUDED.refcount
			RETURNING b.size INTO v_size;
	END IF;
	IF v_size <> p_size THEN
		RAISE EXCEPTION 'blob % stored with size %, not %', encode(p_sha256, 'hex'),
			v_size, p_size USING ERRCODE = 'PN005';
	END IF;
END $$;

-- Drops p_count references; deletes the row when none is left and then
-- returns true (the caller removes the bytes from an external backend).
CREATE FUNCTION blob_unref(p_sha256 bytea, p_count bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	v_ref bigint;
BEGIN
	UPDATE mail_blobs b SET refcount = b.refcount - p_count
		WHERE b.sha256 = p_sha256 RETURNING b.refcount INTO v_ref;
	IF v_ref = 0 THEN
		DELETE FROM mail_blobs b WHERE b.sha256 = p_sha256;
		RETURN true;
	END IF;
	RETURN false;
END $$;

-- Reserves p_count UIDs in a mailbox and bumps its HIGHESTMODSEQ; returns the
-- first UID and the new MODSEQ. Holds the mailbox row lock until the calling
-- transaction ends (see "UIDs" above).
CREATE FUNCTION allocate_uids(p_account_id bigint, p_mailbox_id bigint, p_count integer,
		OUT first_uid bigint, OUT modseq bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_next bigint;
BEGIN
	IF p_count < 1 THEN
		RAISE EXCEPTION 'allocate_uids: count % < 1', p_count USING ERRCODE = 'PN005';
	END IF;
	SELECT mb.uidnext INTO v_next FROM mailboxes mb
		WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox %/%', p_account_id, p_mailbox_id
			USING ERRCODE = 'PN001';
	END IF;
	IF v_next + p_count > 4294967296 THEN
		RAISE EXCEPTION 'mailbox %/% has no UIDs left', p_account_id, p_mailbox_id
			USING ERRCODE = 'PN002';
	END IF;
	UPDATE mailboxes mb SET uidnext = mb.uidnext + p_count,
			highestmodseq = mb.highestmodseq + 1
		WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id
		RETURNING mb.uidnext - p_count, mb.highestmodseq INTO first_uid, modseq;
END $$;

-- Bumps a mailbox's HIGHESTMODSEQ and returns the new value.
CREATE FUNCTION bump_modseq(p_account_id bigint, p_mailbox_id bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_modseq bigint;
BEGIN
	UPDATE mailboxes mb SET highestmodseq = mb.highestmodseq + 1
		WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id
		RETURNING mb.highestmodseq INTO v_modseq;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox %/%', p_account_id, p_mailbox_id
			USING ERRCODE = 'PN001';
	END IF;
	RETURN v_modseq;
END $$;

-- Delivers (or APPENDs) one message into N mailboxes in one transaction:
-- the body is stored once (deduplicated by SHA-256), a row with a fresh UID
-- is linked into each (p_account_ids[i], p_mailbox_ids[i]), and the usage
-- counters grow. Returns one row per distinct target with status
--   'ok'        delivered; uid and modseq set
--   'quota'     the account's (or its tenant's) limit would be exceeded
--   'nomailbox' no such mailbox (deleted meanwhile)
--   'full'      the mailbox has no UIDs left
-- The account limits are checked under the account_usage row lock and are
-- exact; the tenant limit is checked against the sum of its shards without
-- locking them, so concurrent deliveries may pass it by a few messages.
-- p_meta holds the cached fields: header_size, envelope, bodystructure,
-- sent_date, subject, from, to, cc, message_id, in_reply_to, references.
CREATE FUNCTION deliver_message(
		p_sha256 bytea, p_size bigint, p_body bytea,
		p_account_ids bigint[], p_mailbox_ids bigint[],
		p_internaldate timestamptz DEFAULT now(),
		p_flags integer DEFAULT 0, p_keywords text[] DEFAULT '{}',
		p_meta jsonb DEFAULT '{}', p_enforce_quota boolean DEFAULT true,
		p_body_external boolean DEFAULT false)
	RETURNS TABLE (account_id bigint, mailbox_id bigint, uid bigint, modseq bigint, status text)
LANGUAGE plpgsql AS $$
DECLARE
	v_a bigint[];
	v_m bigint[];
	v_st text[];
	v_n integer;
	v_next bigint;
	t record;
	v_ub bigint; v_um bigint; v_qb bigint; v_qm bigint;
	v_tid bigint; v_tqb bigint; v_tqm bigint; v_tb bigint; v_tm bigint;
	v_fits boolean;
	v_j integer;
	v_ten bigint[] := '{}'; v_ten_b bigint[] := '{}'; v_ten_m bigint[] := '{}';
	v_acc bigint[] := '{}'; v_acc_k bigint[] := '{}'; v_acc_t bigint[] := '{}';
	v_total bigint := 0;
	v_uid bigint; v_modseq bigint;
BEGIN
	IF p_size IS NULL OR p_size < 0 OR p_sha256 IS NULL
			OR cardinality(p_account_ids) IS DISTINCT FROM cardinality(p_mailbox_ids) THEN
		RAISE EXCEPTION 'deliver_message: bad arguments' USING ERRCODE = 'PN005';
	END IF;
	SELECT array_agg(x.a ORDER BY x.a, x.m), array_agg(x.m ORDER BY x.a, x.m)
		INTO v_a, v_m
		FROM (SELECT DISTINCT a, m FROM unnest(p_account_ids, p_mailbox_ids) AS u (a, m)) AS x;
	v_n := coalesce(cardinality(v_a), 0);
	IF v_n = 0 THEN
		RETURN;
	END IF;
	v_st := array_fill('nomailbox'::text, ARRAY[v_n]);

	-- 1. mailbox rows, in (account_id, id) order
	FOR i IN 1 .. v_n LOOP
		SELECT mb.uidnext INTO v_next FROM mailboxes mb
			WHERE mb.account_id = v_a[i] AND mb.id = v_m[i] FOR UPDATE;
		IF FOUND THEN
			v_st[i] := CASE WHEN v_next > 4294967295 THEN 'full' ELSE 'ok' END;
		END IF;
	END LOOP;

	-- 2. account usage rows, in account order; quota decisions
	FOR t IN SELECT x.a, count(*) AS k FROM unnest(v_a, v_st) AS x (a, st)
			WHERE x.st = 'ok' GROUP BY x.a ORDER BY x.a LOOP
		SELECT u.bytes, u.messages, ac.quota_bytes, ac.quota_messages,
				ac.tenant_id, tn.quota_bytes, tn.quota_messages
			INTO v_ub, v_um, v_qb, v_qm, v_tid, v_tqb, v_tqm
			FROM account_usage u
			JOIN accounts ac ON ac.id = u.account_id
			JOIN tenants tn ON tn.id = ac.tenant_id
			WHERE u.account_id = t.a FOR UPDATE OF u;
		v_fits := NOT p_enforce_quota OR (
			(v_qb IS NULL OR v_ub + t.k * p_size <= v_qb)
			AND (v_qm IS NULL OR v_um + t.k <= v_qm));
		v_j := array_position(v_ten, v_tid);
		IF v_fits AND p_enforce_quota AND (v_tqb IS NOT NULL OR v_tqm IS NOT NULL) THEN
			SELECT sum(tu.bytes), sum(tu.messages) INTO v_tb, v_tm
				FROM tenant_usage tu WHERE tu.tenant_id = v_tid;
			IF v_j IS NOT NULL THEN
				v_tb := v_tb + v_ten_b[v_j];
				v_tm := v_tm + v_ten_m[v_j];
			END IF;
			v_fits := (v_tqb IS NULL OR v_tb + t.k * p_size <= v_tqb)
				AND (v_tqm IS NULL OR v_tm + t.k <= v_tqm);
		END IF;
		IF v_fits THEN
			IF v_j IS NULL THEN
				v_ten := v_ten || v_tid;
				v_ten_b := v_ten_b || t.k * p_size;
				v_ten_m := v_ten_m || t.k;
			ELSE
				v_ten_b[v_j] := v_ten_b[v_j] + t.k * p_size;
				v_ten_m[v_j] := v_ten_m[v_j] + t.k;
			END IF;
			v_acc := v_acc || t.a;
			v_acc_k := v_acc_k || t.k;
			v_acc_t := v_acc_t || v_tid;
			v_total := v_total + t.k;
		ELSE
			FOR i IN 1 .. v_n LOOP
				IF v_a[i] = t.a AND v_st[i] = 'ok' THEN
					v_st[i] := 'quota';
				END IF;
			END LOOP;
		END IF;
	END LOOP;

	-- 3. the body
	IF v_total > 0 THEN
		PERFORM blob_ref(p_sha256, p_size, p_body, p_body_external, v_total);
	END IF;

	-- 4. one message row per accepted mailbox
	FOR i IN 1 .. v_n LOOP
		account_id := v_a[i];
		mailbox_id := v_m[i];
		uid := NULL;
		modseq := NULL;
		status := v_st[i];
		IF v_st[i] = 'ok' THEN
			UPDATE mailboxes mb SET uidnext = mb.uidnext + 1,
					highestmodseq = mb.highestmodseq + 1
				WHERE mb.account_id = v_a[i] AND mb.id = v_m[i]
				RETURNING mb.uidnext - 1, mb.highestmodseq INTO v_uid, v_modseq;
			INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, keywords,
					internaldate, size, blob_sha256, header_size, envelope,
					bodystructure, sent_date, subject, from_addr, to_addr, cc_addr,
					message_id, in_reply_to, references_hdr)
				VALUES (v_a[i], v_m[i], v_uid, v_modseq, p_flags,
					keywords_add('{}', coalesce(p_keywords, '{}')),
					coalesce(p_internaldate, now()), p_size, p_sha256,
					(p_meta ->> 'header_size')::bigint, p_meta ->> 'envelope',
					p_meta ->> 'bodystructure', (p_meta ->> 'sent_date')::timestamptz,
					p_meta ->> 'subject', p_meta ->> 'from', p_meta ->> 'to',
					p_meta ->> 'cc', p_meta ->> 'message_id', p_meta ->> 'in_reply_to',
					p_meta ->> 'references');
			uid := v_uid;
			modseq := v_modseq;
		END IF;
		RETURN NEXT;
	END LOOP;

	-- 5. usage: accounts (rows already locked), then tenant shards in order
	FOR i IN 1 .. coalesce(cardinality(v_acc), 0) LOOP
		UPDATE account_usage u SET bytes = u.bytes + v_acc_k[i] * p_size,
				messages = u.messages + v_acc_k[i]
			WHERE u.account_id = v_acc[i];
	END LOOP;
	FOR t IN SELECT x.tid, tenant_shard(x.a) AS sh, sum(x.k) AS k
			FROM unnest(v_acc, v_acc_k, v_acc_t) AS x (a, k, tid)
			GROUP BY 1, 2 ORDER BY 1, 2 LOOP
		UPDATE tenant_usage tu SET bytes = tu.bytes + t.k * p_size,
				messages = tu.messages + t.k
			WHERE tu.tenant_id = t.tid AND tu.shard = t.sh;
	END LOOP;
END $$;

-- Expunges messages of one mailbox: p_uids NULL means all; p_only_deleted
-- restricts to messages flagged \Deleted (IMAP EXPUNGE / UID EXPUNGE); false
-- is for MOVE-like callers. Records the UIDs for QRESYNC, lowers the usage
-- and drops the body references. Returns the MODSEQ of the expunge (the
-- unchanged HIGHESTMODSEQ when nothing matched), the expunged UIDs in
-- ascending order and the hex SHA-256 of bodies that lost their last
-- reference (to remove from an external blob backend).
CREATE FUNCTION expunge_messages(p_account_id bigint, p_mailbox_id bigint,
		p_uids bigint[] DEFAULT NULL, p_only_deleted boolean DEFAULT true,
		OUT modseq bigint, OUT expunged bigint[], OUT freed_blobs text[])
LANGUAGE plpgsql AS $$
DECLARE
	v_modseq bigint;
	v_bytes bigint;
	v_count bigint;
	v_blobs bytea[];
	v_tid bigint;
	b record;
BEGIN
	SELECT mb.highestmodseq + 1 INTO v_modseq FROM mailboxes mb
		WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox %/%', p_account_id, p_mailbox_id
			USING ERRCODE = 'PN001';
	END IF;
	WITH d AS (
		DELETE FROM messages m
			WHERE m.account_id = p_account_id AND m.mailbox_id = p_mailbox_id
				AND (p_uids IS NULL OR m.uid = ANY (p_uids))
				AND (NOT p_only_deleted OR (m.flags & 8) <> 0)
			RETURNING m.uid, m.size, m.blob_sha256
	), e AS (
		INSERT INTO expunged_messages (account_id, mailbox_id, uid, modseq)
			SELECT p_account_id, p_mailbox_id, d.uid, v_modseq FROM d
	)
	SELECT coalesce(array_agg(d.uid ORDER BY d.uid), '{}'), coalesce(sum(d.size), 0),
			count(*), coalesce(array_agg(d.blob_sha256), '{}')
		INTO expunged, v_bytes, v_count, v_blobs FROM d;
	freed_blobs := '{}';
	IF v_count = 0 THEN
		modseq := v_modseq - 1;
		RETURN;
	END IF;
	modseq := v_modseq;
	UPDATE mailboxes mb SET highestmodseq = v_modseq
		WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id;
	UPDATE account_usage u SET bytes = u.bytes - v_bytes, messages = u.messages - v_count
		WHERE u.account_id = p_account_id;
	FOR b IN SELECT s, count(*) AS c FROM unnest(v_blobs) AS s GROUP BY s ORDER BY s LOOP
		IF blob_unref(b.s, b.c) THEN
			freed_blobs := freed_blobs || encode(b.s, 'hex');
		END IF;
	END LOOP;
	SELECT ac.tenant_id INTO v_tid FROM accounts ac WHERE ac.id = p_account_id;
	UPDATE tenant_usage tu SET bytes = tu.bytes - v_bytes, messages = tu.messages - v_count
		WHERE tu.tenant_id = v_tid AND tu.shard = tenant_shard(p_account_id);
END $$;

-- Changes flags of messages (IMAP STORE). p_mode: 'replace', 'add' or
-- 'remove'; p_flags is the system flag bit field, p_keywords the keywords.
-- p_unchangedsince (CONDSTORE, RFC 7162 3.1.3): messages whose MODSEQ is
-- higher are left alone and returned with updated = false. Messages whose
-- flags actually change get one new MODSEQ and are returned with updated =
-- true; messages left as they were are not returned.
CREATE FUNCTION store_flags(p_account_id bigint, p_mailbox_id bigint, p_uids bigint[],
		p_mode text, p_flags integer, p_keywords text[] DEFAULT '{}',
		p_unchangedsince bigint DEFAULT NULL)
	RETURNS TABLE (uid bigint, modseq bigint, flags integer, keywords text[], updated boolean)
LANGUAGE plpgsql AS $$
DECLARE
	v_modseq bigint;
	v_kw text[] := coalesce(p_keywords, '{}');
BEGIN
	IF p_mode NOT IN ('replace', 'add', 'remove') OR p_flags < 0 OR p_flags >= 32 THEN
		RAISE EXCEPTION 'store_flags: bad mode or flags' USING ERRCODE = 'PN005';
	END IF;
	SELECT mb.highestmodseq + 1 INTO v_modseq FROM mailboxes mb
		WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox %/%', p_account_id, p_mailbox_id
			USING ERRCODE = 'PN001';
	END IF;
	RETURN QUERY
	WITH target AS (
		SELECT m.uid AS tuid,
			CASE p_mode WHEN 'replace' THEN p_flags
				WHEN 'add' THEN m.flags | p_flags
				ELSE m.flags & ~p_flags END AS nf,
			CASE p_mode WHEN 'replace' THEN keywords_add('{}', v_kw)
				WHEN 'add' THEN keywords_add(m.keywords, v_kw)
				ELSE keywords_remove(m.keywords, v_kw) END AS nk,
			m.flags AS oflags, m.keywords AS okw, m.modseq AS omod
		FROM messages m
		WHERE m.account_id = p_account_id AND m.mailbox_id = p_mailbox_id
			AND m.uid = ANY (p_uids)
	), upd AS (
		UPDATE messages m SET flags = t.nf, keywords = t.nk, modseq = v_modseq
			FROM target t
			WHERE m.account_id = p_account_id AND m.mailbox_id = p_mailbox_id
				AND m.uid = t.tuid
				AND (t.nf <> t.oflags OR t.nk <> t.okw)
				AND (p_unchangedsince IS NULL OR t.omod <= p_unchangedsince)
			RETURNING m.uid, m.modseq, m.flags, m.keywords, true
	)
	SELECT * FROM upd
	UNION ALL
	SELECT t.tuid, t.omod, t.oflags, t.okw, false FROM target t
		WHERE p_unchangedsince IS NOT NULL AND t.omod > p_unchangedsince;
	IF EXISTS (SELECT 1 FROM messages m WHERE m.account_id = p_account_id
			AND m.mailbox_id = p_mailbox_id AND m.modseq = v_modseq) THEN
		UPDATE mailboxes mb SET highestmodseq = v_modseq
			WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id;
	END IF;
END $$;

-- Copies messages to another (or the same) mailbox of the same account
-- (IMAP COPY). New UIDs follow the order of the source UIDs (RFC 4315
-- COPYUID). Raises PN003 when the account's or tenant's limit would be
-- exceeded and p_enforce_quota is true. Returns (src_uid, dst_uid, modseq).
CREATE FUNCTION copy_messages(p_account_id bigint, p_src bigint, p_uids bigint[],
		p_dst bigint, p_enforce_quota boolean DEFAULT true)
	RETURNS TABLE (src_uid bigint, dst_uid bigint, modseq bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_uids bigint[];
	v_bytes bigint;
	v_count bigint;
	v_blobs bytea[];
	v_ub bigint; v_um bigint; v_qb bigint; v_qm bigint;
	v_tid bigint; v_tqb bigint; v_tqm bigint; v_tb bigint; v_tm bigint;
	v_first bigint;
	v_modseq bigint;
	v_locked integer;
	r record;
	b record;
BEGIN
	v_locked := 0;
	FOR r IN SELECT mb.id FROM mailboxes mb WHERE mb.account_id = p_account_id
			AND mb.id IN (p_src, p_dst) ORDER BY mb.id FOR UPDATE LOOP
		v_locked := v_locked + 1;
	END LOOP;
	IF v_locked <> (CASE WHEN p_src = p_dst THEN 1 ELSE 2 END) THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	SELECT coalesce(array_agg(m.uid ORDER BY m.uid), '{}'), coalesce(sum(m.size), 0),
			count(*), coalesce(array_agg(m.blob_sha256), '{}')
		INTO v_uids, v_bytes, v_count, v_blobs
		FROM messages m WHERE m.account_id = p_account_id AND m.mailbox_id = p_src
			AND m.uid = ANY (p_uids);
	IF v_count = 0 THEN
		RETURN;
	END IF;
	SELECT u.bytes, u.messages, ac.quota_bytes, ac.quota_messages,
			ac.tenant_id, tn.quota_bytes, tn.quota_messages
		INTO v_ub, v_um, v_qb, v_qm, v_tid, v_tqb, v_tqm
		FROM account_usage u
		JOIN accounts ac ON ac.id = u.account_id
		JOIN tenants tn ON tn.id = ac.tenant_id
		WHERE u.account_id = p_account_id FOR UPDATE OF u;
	IF p_enforce_quota THEN
		SELECT sum(tu.bytes), sum(tu.messages) INTO v_tb, v_tm
			FROM tenant_usage tu WHERE tu.tenant_id = v_tid;
		IF (v_qb IS NOT NULL AND v_ub + v_bytes > v_qb)
				OR (v_qm IS NOT NULL AND v_um + v_count > v_qm)
				OR (v_tqb IS NOT NULL AND v_tb + v_bytes > v_tqb)
				OR (v_tqm IS NOT NULL AND v_tm + v_count > v_tqm) THEN
			RAISE EXCEPTION 'quota exceeded' USING ERRCODE = 'PN003';
		END IF;
	END IF;
	SELECT a.first_uid, a.modseq INTO v_first, v_modseq
		FROM allocate_uids(p_account_id, p_dst, v_count::integer) a;
	FOR b IN SELECT s, count(*) AS c FROM unnest(v_blobs) AS s GROUP BY s ORDER BY s LOOP
		PERFORM blob_ref(b.s, (SELECT bl.size FROM mail_blobs bl WHERE bl.sha256 = b.s),
			NULL, false, b.c);
	END LOOP;
	INSERT INTO messages (account_id, mailbox_id, uid, modseq, flags, keywords,
			internaldate, size, blob_sha256, header_size, envelope, bodystructure,
			sent_date, subject, from_addr, to_addr, cc_addr, message_id,
			in_reply_to, references_hdr)
		SELECT m.account_id, p_dst, v_first + s.ord - 1, v_modseq, m.flags, m.keywords,
			m.internaldate, m.size, m.blob_sha256, m.header_size, m.envelope,
			m.bodystructure, m.sent_date, m.subject, m.from_addr, m.to_addr,
			m.cc_addr, m.message_id, m.in_reply_to, m.references_hdr
		FROM unnest(v_uids) WITH ORDINALITY AS s (u, ord)
		JOIN messages m ON m.account_id = p_account_id AND m.mailbox_id = p_src
			AND m.uid = s.u;
	UPDATE account_usage u SET bytes = u.bytes + v_bytes, messages = u.messages + v_count
		WHERE u.account_id = p_account_id;
	UPDATE tenant_usage tu SET bytes = tu.bytes + v_bytes, messages = tu.messages + v_count
		WHERE tu.tenant_id = v_tid AND tu.shard = tenant_shard(p_account_id);
	RETURN QUERY SELECT s.u, v_first + s.ord - 1, v_modseq
		FROM unnest(v_uids) WITH ORDINALITY AS s (u, ord);
END $$;

-- Moves messages to another (or the same) mailbox of the same account (IMAP
-- MOVE, RFC 6851): the rows get new UIDs in the destination, the source
-- records the old UIDs as expunged. Usage and bodies do not change. Returns
-- (src_uid, dst_uid, dst_modseq, src_modseq).
CREATE FUNCTION move_messages(p_account_id bigint, p_src bigint, p_uids bigint[], p_dst bigint)
	RETURNS TABLE (src_uid bigint, dst_uid bigint, dst_modseq bigint, src_modseq bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_uids bigint[];
	v_first bigint;
	v_dst_modseq bigint;
	v_src_modseq bigint;
	v_locked integer;
	r record;
BEGIN
	v_locked := 0;
	FOR r IN SELECT mb.id FROM mailboxes mb WHERE mb.account_id = p_account_id
			AND mb.id IN (p_src, p_dst) ORDER BY mb.id FOR UPDATE LOOP
		v_locked := v_locked + 1;
	END LOOP;
	IF v_locked <> (CASE WHEN p_src = p_dst THEN 1 ELSE 2 END) THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	SELECT array_agg(m.uid ORDER BY m.uid) INTO v_uids
		FROM messages m WHERE m.account_id = p_account_id AND m.mailbox_id = p_src
			AND m.uid = ANY (p_uids);
	IF v_uids IS NULL THEN
		RETURN;
	END IF;
	SELECT a.first_uid, a.modseq INTO v_first, v_dst_modseq
		FROM allocate_uids(p_account_id, p_dst, cardinality(v_uids)) a;
	v_src_modseq := bump_modseq(p_account_id, p_src);
	UPDATE messages m SET mailbox_id = p_dst, uid = v_first + s.ord - 1,
			modseq = v_dst_modseq, saved_at = now()
		FROM unnest(v_uids) WITH ORDINALITY AS s (u, ord)
		WHERE m.account_id = p_account_id AND m.mailbox_id = p_src AND m.uid = s.u;
	INSERT INTO expunged_messages (account_id, mailbox_id, uid, modseq)
		SELECT p_account_id, p_src, s.u, v_src_modseq FROM unnest(v_uids) AS s (u);
	RETURN QUERY SELECT s.u, v_first + s.ord - 1, v_dst_modseq, v_src_modseq
		FROM unnest(v_uids) WITH ORDINALITY AS s (u, ord);
END $$;

-- Deletes a mailbox with its messages. Returns the freed bodies (hex).
CREATE FUNCTION delete_mailbox(p_account_id bigint, p_mailbox_id bigint) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	v_freed text[];
BEGIN
	SELECT e.freed_blobs INTO v_freed
		FROM expunge_messages(p_account_id, p_mailbox_id, NULL, false) e;
	DELETE FROM mailboxes mb WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id;
	RETURN v_freed;
END $$;

-- Deletes an account with all its mailboxes and messages; queued outbound
-- mail it sent stays queued. Returns the freed bodies (hex).
CREATE FUNCTION delete_account(p_account_id bigint) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	v_ids bigint[] := '{}';
	v_freed text[] := '{}';
	r record;
BEGIN
	PERFORM 1 FROM accounts ac WHERE ac.id = p_account_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown account %', p_account_id USING ERRCODE = 'PN001';
	END IF;
	-- all mailbox locks first, to keep the lock order
	FOR r IN SELECT mb.id FROM mailboxes mb WHERE mb.account_id = p_account_id
			ORDER BY mb.id FOR UPDATE LOOP
		v_ids := v_ids || r.id;
	END LOOP;
	FOR i IN 1 .. coalesce(cardinality(v_ids), 0) LOOP
		v_freed := v_freed || delete_mailbox(p_account_id, v_ids[i]);
	END LOOP;
	DELETE FROM accounts ac WHERE ac.id = p_account_id;
	RETURN v_freed;
END $$;

-- Queues a message for outbound delivery to p_recipients; takes a reference
-- on the body like deliver_message(). Returns the queue id.
CREATE FUNCTION outbound_enqueue(p_tenant_id bigint, p_account_id bigint, p_sender text,
		p_recipients text[], p_sha256 bytea, p_size bigint, p_body bytea,
		p_body_external boolean DEFAULT false, p_envid text DEFAULT NULL,
		p_ret text DEFAULT NULL)
	RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint;
BEGIN
	IF coalesce(cardinality(p_recipients), 0) = 0 THEN
		RAISE EXCEPTION 'outbound_enqueue: no recipients' USING ERRCODE = 'PN005';
	END IF;
	PERFORM blob_ref(p_sha256, p_size, p_body, p_body_external, 1);
	INSERT INTO outbound_queue (tenant_id, account_id, sender, blob_sha256, size, envid, ret)
		VALUES (p_tenant_id, p_account_id, coalesce(p_sender, ''), p_sha256, p_size,
			p_envid, p_ret)
		RETURNING id INTO v_id;
	INSERT INTO outbound_recipients (queue_id, rcpt_index, recipient)
		SELECT v_id, r.ord, r.addr FROM unnest(p_recipients) WITH ORDINALITY AS r (addr, ord);
	RETURN v_id;
END $$;

-- Claims up to p_limit due queue entries for worker p_worker for p_lease:
-- rows another worker is claiming at this moment are skipped, not waited
-- for; rows under a live lease are not due.
CREATE FUNCTION outbound_claim(p_worker text, p_lease interval, p_limit integer)
	RETURNS SETOF outbound_queue
LANGUAGE sql AS $$
	UPDATE outbound_queue q SET locked_by = p_worker, locked_until = now() + p_lease,
			attempts = q.attempts + 1
		WHERE q.id IN (
			SELECT c.id FROM outbound_queue c
				WHERE c.next_attempt_at <= now()
					AND (c.locked_until IS NULL OR c.locked_until <= now())
				ORDER BY c.next_attempt_at, c.id
				LIMIT p_limit
				FOR UPDATE SKIP LOCKED)
		RETURNING q.*
$$;

-- Removes a finished queue entry (all recipients delivered or bounced) and
-- drops its body reference. Returns the freed body (hex) or NULL.
CREATE FUNCTION outbound_finish(p_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	v_sha bytea;
BEGIN
	DELETE FROM outbound_queue q WHERE q.id = p_id RETURNING q.blob_sha256 INTO v_sha;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	IF blob_unref(v_sha, 1) THEN
		RETURN encode(v_sha, 'hex');
	END IF;
	RETURN NULL;
END $$;

-- Recipient resolution for inbound mail. One step: an alias for the exact
-- address wins; else an account with that address; then the same for the
-- address with its +tag stripped (user+tag@d -> user@d); then the domain's
-- catch-all ('@d'). Alias destinations are resolved again (an address met
-- before on the same chain resolves to its account only, so loops end).
-- Rows: (account_id, address) for a local account, (NULL, address) for a
-- remote destination. No row: unknown local recipient.
CREATE FUNCTION resolve_recipient_step(p_address text, p_depth integer, p_seen text[])
	RETURNS TABLE (account_id bigint, address text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_addr text := lower(p_address);
	v_at integer;
	v_local text;
	v_domain text;
	v_cands text[];
	v_catchall text;
	c text;
	d record;
	v_found boolean := false;
	v_acc record;
BEGIN
	IF p_depth > 8 THEN
		RAISE EXCEPTION 'alias chain too deep at %', p_address USING ERRCODE = 'PN006';
	END IF;
	IF strpos(v_addr, '@') = 0 THEN
		RETURN;
	END IF;
	v_at := length(v_addr) - strpos(reverse(v_addr), '@') + 1;
	v_local := left(v_addr, v_at - 1);
	v_domain := substr(v_addr, v_at + 1);
	IF NOT EXISTS (SELECT 1 FROM domains dm WHERE dm.name = v_domain) THEN
		account_id := NULL;
		address := p_address;
		RETURN NEXT;
		RETURN;
	END IF;
	v_cands := ARRAY[v_addr];
	IF strpos(v_local, '+') > 1 THEN
		v_cands := v_cands || (split_part(v_local, '+', 1) || '@' || v_domain);
	END IF;
	FOREACH c IN ARRAY v_cands LOOP
		IF NOT (c = ANY (p_seen)) THEN
			FOR d IN SELECT al.destination FROM aliases al
					WHERE lower(al.source) = c ORDER BY al.id LOOP
				v_found := true;
				RETURN QUERY SELECT * FROM resolve_recipient_step(d.destination,
					p_depth + 1, p_seen || c);
			END LOOP;
			IF v_found THEN
				RETURN;
			END IF;
		END IF;
		SELECT ac.id, ac.address INTO v_acc FROM accounts ac WHERE lower(ac.address) = c;
		IF FOUND THEN
			account_id := v_acc.id;
			address := v_acc.address;
			RETURN NEXT;
			RETURN;
		END IF;
	END LOOP;
	v_catchall := '@' || v_domain;
	IF NOT (v_catchall = ANY (p_seen)) THEN
		FOR d IN SELECT al.destination FROM aliases al
				WHERE lower(al.source) = v_catchall ORDER BY al.id LOOP
			RETURN QUERY SELECT * FROM resolve_recipient_step(d.destination,
				p_depth + 1, p_seen || v_catchall);
		END LOOP;
	END IF;
END $$;

CREATE FUNCTION resolve_recipient(p_address text)
	RETURNS TABLE (account_id bigint, address text)
LANGUAGE sql STABLE AS $$
	SELECT DISTINCT r.account_id, r.address
	FROM resolve_recipient_step(p_address, 0, '{}') AS r
$$;
