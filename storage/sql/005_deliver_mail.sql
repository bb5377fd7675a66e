-- 005: delivery in one statement (backend/delivery.c, issue #6).
--
-- Before this file a delivery was six round trips (resolve, BEGIN, lock the
-- mailboxes, the duplicate probe, deliver_message(), COMMIT), and the client
-- waits for all of them before its 250. deliver_mail() does the same work in
-- one call that the pool runs in autocommit: the statement is its own
-- transaction, PostgreSQL commits it before it answers, so the caller sees
-- either every row of the delivery committed or an error (nothing partial
-- is ever visible, and a 250 still means "committed").
--
-- resolve_rcpts() is the recipient resolution that RCPT and deliver_mail()
-- share (it was the query text sql_resolve in backend/delivery.c), with the
-- unqualified "Postmaster" of RFC 5321 4.5.1 mapped to an address.
-- mail_blobs.body is compressed with lz4 instead of pglz where the server
-- has it: the same decision per value (TOAST), several times less CPU.

-- One row per (recipient, resolved target), recipients in order (i is the
-- 1-based position in p_rcpts). address NULL: unknown. account_id NULL with
-- an address: remote (localdom says whether the recipient's domain is
-- ours). mailbox_id: the +tag folder (exact name first, else a
-- case-insensitive match) when the account was reached through the
-- stripped address, else INBOX. The quota columns are -1 for "no limit".
--
-- RFC 5321 4.5.1: RCPT TO:<Postmaster> (no domain, any case) must be
-- accepted. It stands for p_postmaster when that is given (the frontend's
-- postmaster_address setting), else for postmaster@ the cluster's primary
-- domain, the first one created (lowest id), resolved like any address of
-- that domain: an account or alias named postmaster, else the domain's
-- catch-all; without any of them the recipient is unknown (550 5.1.1), as
-- for any address that names nobody. (OFFSET 0 keeps the planner from
-- copying the expression into every use of r.addr.)
CREATE FUNCTION resolve_rcpts(p_rcpts text[], p_postmaster text)
	RETURNS TABLE (i bigint, account_id bigint, enabled boolean, tenant_id bigint,
		localdom boolean, mailbox_id bigint, address text, quota_bytes bigint,
		quota_messages bigint, used_bytes bigint, used_messages bigint,
		tenant_quota_bytes bigint, tenant_quota_messages bigint,
		tenant_bytes bigint, tenant_messages bigint)
LANGUAGE sql STABLE AS $$
	SELECT r.i, x.account_id, ac.enabled, coalesce(ac.tenant_id, dm.tenant_id),
		dm.id IS NOT NULL,
		CASE WHEN x.account_id IS NULL THEN NULL ELSE coalesce(
			(SELECT mb.id FROM mailboxes mb WHERE mb.account_id = x.account_id
				AND p.tag IS NOT NULL AND lower(ac.address) = p.base
				AND lower(mb.name) = lower(p.tag)
				ORDER BY (mb.name = p.tag) DESC, mb.id LIMIT 1),
			(SELECT mb.id FROM mailboxes mb WHERE mb.account_id = x.account_id
				AND mb.name = 'INBOX')) END,
		x.address,
		coalesce(ac.quota_bytes, -1), coalesce(ac.quota_messages, -1),
		coalesce(u.bytes, 0), coalesce(u.messages, 0),
		coalesce(tn.quota_bytes, -1), coalesce(tn.quota_messages, -1),
		coalesce((SELECT sum(tu.bytes) FROM tenant_usage tu
			WHERE tu.tenant_id = ac.tenant_id), 0)::bigint,
		coalesce((SELECT sum(tu.messages) FROM tenant_usage tu
			WHERE tu.tenant_id = ac.tenant_id), 0)::bigint
	FROM unnest(p_rcpts) WITH ORDINALITY AS r0 (given, i)
	CROSS JOIN LATERAL (SELECT r0.i,
		CASE WHEN strpos(r0.given, '@') = 0 AND lower(r0.given) = 'postmaster' THEN
			coalesce(nullif(p_postmaster, ''),
				(SELECT 'postmaster@' || d.name FROM domains d ORDER BY d.id LIMIT 1),
				r0.given)
		ELSE r0.given END AS addr OFFSET 0) AS r
	CROSS JOIN LATERAL (SELECT
		lower(substr(r.addr, length(r.addr) - strpos(reverse(r.addr), '@') + 2)) AS domain,
		left(r.addr, length(r.addr) - strpos(reverse(r.addr), '@')) AS lp) AS s
	CROSS JOIN LATERAL (SELECT
		CASE WHEN strpos(s.lp, '+') > 1 THEN substr(s.lp, strpos(s.lp, '+') + 1) END AS tag,
		lower(split_part(s.lp, '+', 1)) || '@' || s.domain AS base) AS p
	LEFT JOIN domains dm ON dm.name = s.domain
	-- the common case first: an account with exactly this address and no
	-- alias for it (an alias wins over an account); anything else goes
	-- through resolve_recipient() (aliases, +tag, catch-all). Two index
	-- probes instead of a PL/pgSQL call per recipient; the same rows.
	LEFT JOIN LATERAL (
		SELECT f.id AS account_id, f.address FROM accounts f
			WHERE lower(f.address) = lower(r.addr)
			AND NOT EXISTS (SELECT 1 FROM aliases al WHERE lower(al.source) = lower(r.addr))
		UNION ALL
		SELECT g.account_id, g.address FROM resolve_recipient(r.addr) AS g
			WHERE NOT EXISTS (SELECT 1 FROM accounts f WHERE lower(f.address) = lower(r.addr)
				AND NOT EXISTS (SELECT 1 FROM aliases al
					WHERE lower(al.source) = lower(r.addr)))
	) x ON true
	LEFT JOIN accounts ac ON ac.id = x.account_id
	LEFT JOIN account_usage u ON u.account_id = x.account_id
	LEFT JOIN tenants tn ON tn.id = ac.tenant_id
	ORDER BY r.i, x.account_id NULLS LAST
$$;

-- Delivers one message to the envelope recipients p_rcpts in one call (the
-- caller runs it as a statement of its own: one transaction, one commit).
-- It does what backend/delivery.c did in six round trips, with the same
-- decisions (docs/storage.md, "Delivery"):
--   1. resolve_rcpts(): local targets (enabled account, a mailbox), remote
--      ones (forwarding from one of our domains; with p_submit_tenant, an
--      authenticated submission, any foreign address, queued for that
--      tenant); a recipient without a target gets one row of kind
--      'unknown', 'disabled' or 'relay' per resolved address;
--   2. the stored body: p_return_path, then "Delivered-To: <recipient as
--      given>" when there is exactly one local target, then p_body; its
--      SHA-256 and size are computed here (the caller cannot know the
--      prefix before the resolution);
--   3. the target mailboxes locked in (account_id, id) order, UIDs taken;
--   4. the duplicate guard: a mailbox that holds a message with
--      p_message_id saved within p_window seconds is acknowledged ('dup')
--      but gets no copy (the probe runs after the lock, in a statement of
--      its own, so it sees a racing delivery that committed meanwhile);
--   5. quota per account under its account_usage row lock (exact), the
--      tenant's limit against the sum of its shards (not locked);
--   6. the body stored once or referenced again, one messages row with the
--      cache columns per mailbox, the usage counters;
--   7. one outbound_enqueue() per tenant for the remote targets.
-- The lock order is the schema's: mailboxes -> account_usage -> mail_blobs
-- -> tenant_usage (then mail_blobs again for the queue, as before).
-- Returns one row per target: kind 'ok' (uid, modseq), 'dup', 'quota'
-- (quota_bytes: the account's limit, -1 none), 'nomailbox', 'full',
-- 'queued' (queue_id); and per recipient without targets the rows above.
-- sha256 and size of the body as stored (or as it would have been) are on
-- every target row; NULL on the rows of recipients without a target.
CREATE FUNCTION deliver_mail(
		p_rcpts text[], p_postmaster text,
		p_submit_tenant bigint, p_submit_account bigint,
		p_sender text, p_return_path bytea, p_body bytea, p_header_size bigint,
		p_envelope text, p_bodystructure text, p_sent_date timestamptz,
		p_subject text, p_from text, p_to text, p_cc text, p_message_id text,
		p_in_reply_to text, p_references text, p_window integer,
		p_envid text, p_ret text)
	RETURNS TABLE (rcpt integer, kind text, account_id bigint, mailbox_id bigint,
		uid bigint, modseq bigint, quota_bytes bigint, sha256 bytea, size bigint,
		queue_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	-- local targets (one per resolved row), then the distinct mailboxes
	v_tr integer[] := '{}'; v_ta bigint[] := '{}'; v_tm bigint[] := '{}';
	v_tq bigint[] := '{}';
	v_a bigint[]; v_m bigint[]; v_st text[]; v_uid bigint[]; v_ms bigint[];
	v_n integer;
	-- remote targets
	v_rr integer[] := '{}'; v_raddr text[] := '{}'; v_rt bigint[] := '{}';
	-- recipients without a target
	v_xr integer[] := '{}'; v_xk text[] := '{}';
	v_body bytea; v_sha bytea; v_size bigint; v_prefix bytea;
	v_next bigint;
	v_ub bigint; v_um bigint; v_qb bigint; v_qm bigint;
	v_tid bigint; v_tqb bigint; v_tqm bigint; v_tsb bigint; v_tsm bigint;
	v_k bigint; v_fits boolean; v_j integer;
	v_ten bigint[] := '{}'; v_ten_b bigint[] := '{}'; v_ten_m bigint[] := '{}';
	v_acc bigint[] := '{}'; v_acc_k bigint[] := '{}'; v_acc_t bigint[] := '{}';
	v_total bigint := 0;
	v_qid bigint[] := '{}'; v_qten bigint[] := '{}';
	v_ref bigint;
	-- the internal date's zone as deliver_message() (004) takes it: the
	-- session's TimeZone offset now
	v_tz integer := (extract(timezone FROM now()) / 60)::integer;
BEGIN
	IF coalesce(cardinality(p_rcpts), 0) = 0 OR p_body IS NULL OR p_return_path IS NULL THEN
		RAISE EXCEPTION 'deliver_mail: bad arguments' USING ERRCODE = 'PN005';
	END IF;

	-- 1. resolution
	FOR r IN SELECT x.i, x.account_id, x.enabled, x.tenant_id, x.localdom,
			x.mailbox_id, x.address, x.quota_bytes
			FROM resolve_rcpts(p_rcpts, p_postmaster) AS x LOOP
		IF r.address IS NULL THEN
			v_xr := v_xr || r.i::integer; v_xk := v_xk || 'unknown'::text;
		ELSIF r.account_id IS NULL THEN
			IF r.localdom THEN
				v_rr := v_rr || r.i::integer; v_raddr := v_raddr || r.address;
				v_rt := v_rt || r.tenant_id;
			ELSIF p_submit_tenant IS NOT NULL THEN
				v_rr := v_rr || r.i::integer; v_raddr := v_raddr || r.address;
				v_rt := v_rt || p_submit_tenant;
			ELSE
				v_xr := v_xr || r.i::integer; v_xk := v_xk || 'relay'::text;
			END IF;
		ELSIF NOT r.enabled THEN
			v_xr := v_xr || r.i::integer; v_xk := v_xk || 'disabled'::text;
		ELSIF r.mailbox_id IS NULL THEN
			v_xr := v_xr || r.i::integer; v_xk := v_xk || 'unknown'::text;
		ELSE
			v_tr := v_tr || r.i::integer; v_ta := v_ta || r.account_id;
			v_tm := v_tm || r.mailbox_id; v_tq := v_tq || r.quota_bytes;
		END IF;
	END LOOP;
	FOR i IN 1 .. coalesce(cardinality(v_xr), 0) LOOP
		rcpt := v_xr[i]; kind := v_xk[i];
		account_id := NULL; mailbox_id := NULL; uid := NULL; modseq := NULL;
		quota_bytes := NULL; sha256 := NULL; size := NULL; queue_id := NULL;
		RETURN NEXT;
	END LOOP;
	IF cardinality(v_tr) = 0 AND cardinality(v_rr) = 0 THEN
		RETURN;
	END IF;

	-- 2. the body as stored
	IF cardinality(v_tr) = 1 THEN
		v_prefix := p_return_path || convert_to('Delivered-To: ' || p_rcpts[v_tr[1]] || E'\r\n',
			'UTF8');
	ELSE
		v_prefix := p_return_path;
	END IF;
	v_body := v_prefix || p_body;
	v_sha := pg_catalog.sha256(v_body);
	v_size := length(v_body);

	-- 3. the distinct mailboxes in lock order, locked, UIDs taken
	IF cardinality(v_ta) <= 1 THEN
		v_a := v_ta;	-- one target (or none): no statement needed
		v_m := v_tm;
	ELSE
		SELECT array_agg(x.a ORDER BY x.a, x.m), array_agg(x.m ORDER BY x.a, x.m)
			INTO v_a, v_m
			FROM (SELECT DISTINCT a, m FROM unnest(v_ta, v_tm) AS u (a, m)) AS x;
	END IF;
	v_n := coalesce(cardinality(v_a), 0);
	v_st := array_fill('nomailbox'::text, ARRAY[v_n]);
	v_uid := array_fill(NULL::bigint, ARRAY[v_n]);
	v_ms := array_fill(NULL::bigint, ARRAY[v_n]);
	FOR i IN 1 .. v_n LOOP
		UPDATE mailboxes mb SET uidnext = mb.uidnext + 1,
				highestmodseq = mb.highestmodseq + 1
			WHERE mb.account_id = v_a[i] AND mb.id = v_m[i] AND mb.uidnext <= 4294967295
			RETURNING mb.uidnext - 1, mb.highestmodseq INTO v_next, v_k;
		IF FOUND THEN
			v_st[i] := 'ok';
			v_uid[i] := v_next;
			v_ms[i] := v_k;
		ELSE
			SELECT mb.uidnext INTO v_next FROM mailboxes mb
				WHERE mb.account_id = v_a[i] AND mb.id = v_m[i] FOR UPDATE;
			IF FOUND THEN
				v_st[i] := 'full';
			END IF;
		END IF;
	END LOOP;

	-- 4. the duplicate guard (a new statement: a new snapshot), one probe
	-- of messages_message_id per mailbox (scalar keys: no plan but the
	-- index probe, whatever the statistics say)
	IF p_message_id IS NOT NULL THEN
		FOR i IN 1 .. v_n LOOP
			CONTINUE WHEN v_st[i] <> 'ok';
			IF EXISTS (SELECT 1 FROM messages x
					WHERE x.account_id = v_a[i] AND x.mailbox_id = v_m[i]
					AND x.message_id = p_message_id
					AND x.saved_at > now() - make_interval(secs => p_window)) THEN
				v_st[i] := 'dup';
			END IF;
		END LOOP;
	END IF;

	-- 5. quota, in account order (v_a is sorted)
	FOR i IN 1 .. v_n LOOP
		CONTINUE WHEN v_st[i] <> 'ok' OR (i > 1 AND v_a[i - 1] = v_a[i]);
		v_k := 0;
		FOR j IN i .. v_n LOOP
			EXIT WHEN v_a[j] <> v_a[i];
			IF v_st[j] = 'ok' THEN
				v_k := v_k + 1;
			END IF;
		END LOOP;
		SELECT u.bytes, u.messages, ac.quota_bytes, ac.quota_messages,
				ac.tenant_id, tn.quota_bytes, tn.quota_messages
			INTO v_ub, v_um, v_qb, v_qm, v_tid, v_tqb, v_tqm
			FROM account_usage u
			JOIN accounts ac ON ac.id = u.account_id
			JOIN tenants tn ON tn.id = ac.tenant_id
			WHERE u.account_id = v_a[i] FOR UPDATE OF u;
		v_fits := FOUND AND (v_qb IS NULL OR v_ub + v_k * v_size <= v_qb)
			AND (v_qm IS NULL OR v_um + v_k <= v_qm);
		v_j := array_position(v_ten, v_tid);
		IF v_fits AND (v_tqb IS NOT NULL OR v_tqm IS NOT NULL) THEN
			SELECT sum(tu.bytes), sum(tu.messages) INTO v_tsb, v_tsm
				FROM tenant_usage tu WHERE tu.tenant_id = v_tid;
			IF v_j IS NOT NULL THEN
				v_tsb := v_tsb + v_ten_b[v_j];
				v_tsm := v_tsm + v_ten_m[v_j];
			END IF;
			v_fits := (v_tqb IS NULL OR v_tsb + v_k * v_size <= v_tqb)
				AND (v_tqm IS NULL OR v_tsm + v_k <= v_tqm);
		END IF;
		IF v_fits THEN
			IF v_j IS NULL THEN
				v_ten := v_ten || v_tid;
				v_ten_b := v_ten_b || v_k * v_size;
				v_ten_m := v_ten_m || v_k;
			ELSE
				v_ten_b[v_j] := v_ten_b[v_j] + v_k * v_size;
				v_ten_m[v_j] := v_ten_m[v_j] + v_k;
			END IF;
			v_acc := v_acc || v_a[i];
			v_acc_k := v_acc_k || v_k;
			v_acc_t := v_acc_t || v_tid;
			v_total := v_total + v_k;
		ELSE
			FOR j IN i .. v_n LOOP
				EXIT WHEN v_a[j] <> v_a[i];
				IF v_st[j] = 'ok' THEN
					v_st[j] := 'quota';
				END IF;
			END LOOP;
		END IF;
	END LOOP;

	-- a mailbox that will not get the message gives its UID back (the row
	-- is still locked by us, so nobody saw the increment)
	FOR i IN 1 .. v_n LOOP
		IF v_st[i] IN ('dup', 'quota') THEN
			UPDATE mailboxes mb SET uidnext = mb.uidnext - 1,
					highestmodseq = mb.highestmodseq - 1
				WHERE mb.account_id = v_a[i] AND mb.id = v_m[i];
			v_uid[i] := NULL;
			v_ms[i] := NULL;
		END IF;
	END LOOP;

	-- 6. the body, the messages, the usage
	IF v_total > 0 THEN
		INSERT INTO mail_blobs AS b (sha256, size, body, refcount)
			VALUES (v_sha, v_size, v_body, v_total)
			ON CONFLICT ON CONSTRAINT mail_blobs_pkey
			DO UPDATE SET refcount = b.refcount + EXCLUDED.refcount
			RETURNING b.size INTO v_ref;
		IF v_ref <> v_size THEN
			RAISE EXCEPTION 'blob % stored with size %, not %', encode(v_sha, 'hex'),
				v_ref, v_size USING ERRCODE = 'PN005';
		END IF;
		FOR i IN 1 .. v_n LOOP
			CONTINUE WHEN v_st[i] <> 'ok';
			INSERT INTO messages (account_id, mailbox_id, uid, modseq, internaldate,
					internaldate_tz, size, blob_sha256, header_size, envelope,
					bodystructure, sent_date, subject, from_addr, to_addr, cc_addr,
					message_id, in_reply_to, references_hdr)
				VALUES (v_a[i], v_m[i], v_uid[i], v_ms[i], now(), v_tz, v_size, v_sha,
					p_header_size + length(v_prefix), p_envelope, p_bodystructure,
					p_sent_date, p_subject, p_from, p_to, p_cc, p_message_id,
					p_in_reply_to, p_references);
		END LOOP;
		FOR i IN 1 .. cardinality(v_acc) LOOP
			UPDATE account_usage u SET bytes = u.bytes + v_acc_k[i] * v_size,
					messages = u.messages + v_acc_k[i]
				WHERE u.account_id = v_acc[i];
		END LOOP;
		IF cardinality(v_acc) = 1 THEN
			UPDATE tenant_usage tu SET bytes = tu.bytes + v_acc_k[1] * v_size,
					messages = tu.messages + v_acc_k[1]
				WHERE tu.tenant_id = v_acc_t[1] AND tu.shard = tenant_shard(v_acc[1]);
		ELSE
			FOR r IN SELECT x.tid, tenant_shard(x.a) AS sh, sum(x.k) AS k
					FROM unnest(v_acc, v_acc_k, v_acc_t) AS x (a, k, tid)
					GROUP BY 1, 2 ORDER BY 1, 2 LOOP
				UPDATE tenant_usage tu SET bytes = tu.bytes + r.k * v_size,
						messages = tu.messages + r.k
					WHERE tu.tenant_id = r.tid AND tu.shard = r.sh;
			END LOOP;
		END IF;
	END IF;

	-- 7. the outbound queue, one entry per tenant
	IF cardinality(v_rr) > 0 THEN
		FOR r IN SELECT x.t, array_agg(x.addr ORDER BY x.o) AS addrs
				FROM unnest(v_rt, v_raddr) WITH ORDINALITY AS x (t, addr, o)
				GROUP BY x.t ORDER BY min(x.o) LOOP
			v_qten := v_qten || r.t;
			v_qid := v_qid || outbound_enqueue(r.t, p_submit_account, p_sender, r.addrs,
				v_sha, v_size, v_body, false, p_envid, p_ret);
		END LOOP;
	END IF;

	-- the rows: local targets (every recipient of a shared mailbox), remote
	sha256 := v_sha;
	size := v_size;
	FOR t IN 1 .. cardinality(v_tr) LOOP
		v_j := NULL;
		FOR i IN 1 .. v_n LOOP
			IF v_a[i] = v_ta[t] AND v_m[i] = v_tm[t] THEN
				v_j := i;
				EXIT;
			END IF;
		END LOOP;
		rcpt := v_tr[t]; kind := v_st[v_j];
		account_id := v_ta[t]; mailbox_id := v_tm[t];
		uid := v_uid[v_j]; modseq := v_ms[v_j]; quota_bytes := v_tq[t];
		queue_id := NULL;
		RETURN NEXT;
	END LOOP;
	FOR t IN 1 .. cardinality(v_rr) LOOP
		rcpt := v_rr[t]; kind := 'queued';
		account_id := NULL; mailbox_id := NULL; uid := NULL; modseq := NULL;
		quota_bytes := NULL;
		queue_id := v_qid[array_position(v_qten, v_rt[t])];
		RETURN NEXT;
	END LOOP;
END $$;

-- lz4 for the bodies where the server was built with it (TOAST compresses
-- bodies over about 2 KiB; pglz cost measurable CPU per delivery). Values
-- stored before keep their pglz compression; both are read transparently.
DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'
			AND 'lz4' = ANY (enumvals)) THEN
		ALTER TABLE mail_blobs ALTER COLUMN body SET COMPRESSION lz4;
	END IF;
END $$;
