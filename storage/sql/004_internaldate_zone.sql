-- 004: INTERNALDATE keeps its time zone. RFC 3501 2.3.3 gives a message
-- an internal date and time "with time zone": APPEND "17-Jul-1996 02:44:25
-- -0700" must FETCH back as that same string, and SEARCH BEFORE/ON/SINCE
-- take the calendar day of the date in that zone (6.4.4, "disregarding
-- time and timezone"; Dovecot does the same). internaldate stays the
-- instant; internaldate_tz is the zone, minutes east of UTC, as IMAP
-- writes it (-5999 .. +5999, "-9959" .. "+9959"). Rows from before this
-- migration were written without a zone and read back as +0000, which is
-- how they were shown until now, so the default 0 changes nothing for them.
--
-- deliver_message() gets p_internaldate_tz (NULL: the offset of the
-- connection's TimeZone at the internal date, i.e. the database server's
-- local zone unless the client set one; +0000 in the UTC containers), and
-- copy_messages() carries the zone over (move_messages() moves the row).

-- Adding a column with a constant default does not rewrite the table; the
-- CHECK is added NOT VALID so that no scan of existing rows (all 0) holds
-- the migration's lock. New and updated rows are checked.
ALTER TABLE messages ADD COLUMN internaldate_tz smallint NOT NULL DEFAULT 0;
ALTER TABLE messages ADD CONSTRAINT messages_internaldate_tz_check
	CHECK (internaldate_tz BETWEEN -5999 AND 5999) NOT VALID;

-- The signature grows by one parameter: drop the old one so that calls with
-- the former argument list are not ambiguous.
DROP FUNCTION deliver_message(bytea, bigint, bytea, bigint[], bigint[], timestamptz,
	integer, text[], jsonb, boolean, boolean);

-- As in 001_initial.sql, with p_internaldate_tz (see above).
CREATE FUNCTION deliver_message(
		p_sha256 bytea, p_size bigint, p_body bytea,
		p_account_ids bigint[], p_mailbox_ids bigint[],
		p_internaldate timestamptz DEFAULT now(),
		p_flags integer DEFAULT 0, p_keywords text[] DEFAULT '{}',
		p_meta jsonb DEFAULT '{}', p_enforce_quota boolean DEFAULT true,
		p_body_external boolean DEFAULT false, p_internaldate_tz integer DEFAULT NULL)
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
	v_date timestamptz := coalesce(p_internaldate, now());
	v_tz integer := coalesce(p_internaldate_tz,
		(extract(timezone FROM coalesce(p_internaldate, now())) / 60)::integer);
BEGIN
	IF p_size IS NULL OR p_size < 0 OR p_sha256 IS NULL
			OR cardinality(p_account_ids) IS DISTINCT FROM cardinality(p_mailbox_ids)
			OR v_tz NOT BETWEEN -5999 AND 5999 THEN
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
					internaldate, internaldate_tz, size, blob_sha256, header_size,
					envelope, bodystructure, sent_date, subject, from_addr, to_addr,
					cc_addr, message_id, in_reply_to, references_hdr)
				VALUES (v_a[i], v_m[i], v_uid, v_modseq, p_flags,
					keywords_add('{}', coalesce(p_keywords, '{}')),
					v_date, v_tz, p_size, p_sha256,
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

-- As in 001_initial.sql, copying internaldate_tz.
CREATE OR REPLACE FUNCTION copy_messages(p_account_id bigint, p_src bigint, p_uids bigint[],
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
			internaldate, internaldate_tz, size, blob_sha256, header_size, envelope,
			bodystructure, sent_date, subject, from_addr, to_addr, cc_addr, message_id,
			in_reply_to, references_hdr)
		SELECT m.account_id, p_dst, v_first + s.ord - 1, v_modseq, m.flags, m.keywords,
			m.internaldate, m.internaldate_tz, m.size, m.blob_sha256, m.header_size, m.envelope,
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
