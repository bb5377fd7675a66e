-- Postern mail store, schema version 6: read-only fast paths for IMAP
-- SELECT/EXAMINE (mailbox_select) and the changes poll (mailbox_changes).
--
-- Until 004 both functions first locked the mailbox row (FOR UPDATE to
-- claim \Recent, FOR SHARE for EXAMINE) so that their several statements,
-- each with its own snapshot under READ COMMITTED, saw one state of the
-- mailbox. The lock gives the transaction an id and a WAL record, so every
-- SELECT and every poll committed with a WAL flush, although almost always
-- there is nothing to claim and nothing changed (bench/README.md, finding 9).
--
-- Now each function first reads everything it needs in ONE statement (one
-- snapshot, so uidnext, highestmodseq and the UID list agree without a
-- lock) and returns from it when:
-- * mailbox_select: nothing is to be claimed as \Recent (EXAMINE, or
--   recent_uid >= uidnext - 1): the answer is that statement's row;
-- * mailbox_changes: nothing changed since the session's last look
--   (uidnext <= p_known_uidnext and highestmodseq <= p_since_modseq, and
--   nothing to claim): the answer is the single 'M' row.
-- This is exact, not a heuristic: every writer of messages or
-- expunged_messages (deliver_message, copy/move, store_flags,
-- expunge_messages) holds the mailbox row lock and raises uidnext and/or
-- highestmodseq to at least the modseq it writes, in the same transaction,
-- so a snapshot whose uidnext and highestmodseq equal the session's has no
-- 'E', 'F' or 'N' row to report. A writer that commits after the snapshot
-- notifies the mailbox's channel and is read by the next poll, as before.
-- Otherwise both run their 002 bodies unchanged (row lock, claim, rows).

CREATE OR REPLACE FUNCTION mailbox_select(p_account_id bigint, p_name text, p_claim boolean,
		OUT mailbox_id bigint, OUT uidvalidity bigint, OUT uidnext bigint,
		OUT highestmodseq bigint, OUT recent_after bigint, OUT uids text,
		OUT unseen bigint, OUT first_unseen bigint, OUT keywords text)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
	v_noselect boolean;
BEGIN
	-- the fast path: one statement, one snapshot, no lock
	SELECT mb.id, mb.recent_uid, mb.noselect, mb.uidvalidity, mb.uidnext,
			mb.highestmodseq, u.uids, u.unseen, u.first_unseen, k.keywords
		INTO mailbox_id, recent_after, v_noselect, uidvalidity, uidnext,
			highestmodseq, uids, unseen, first_unseen, keywords
		FROM mailboxes mb
		CROSS JOIN LATERAL (
			SELECT coalesce(string_agg(m.uid::text, ',' ORDER BY m.uid), '') AS uids,
				count(*) FILTER (WHERE m.flags & 1 = 0) AS unseen,
				min(m.uid) FILTER (WHERE m.flags & 1 = 0) AS first_unseen
			FROM messages m
			WHERE m.account_id = mb.account_id AND m.mailbox_id = mb.id) u
		CROSS JOIN LATERAL (
			SELECT coalesce(string_agg(x.k, ' ' ORDER BY lower(x.k)), '') AS keywords
			FROM (SELECT DISTINCT ON (lower(kw.k)) kw.k
				FROM messages m, unnest(m.keywords) AS kw (k)
				WHERE m.account_id = mb.account_id AND m.mailbox_id = mb.id
				ORDER BY lower(kw.k), kw.k) AS x) k
		WHERE mb.account_id = p_account_id AND mb.name = p_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	IF v_noselect THEN
		RAISE EXCEPTION 'mailbox is \Noselect' USING ERRCODE = 'PN007';
	END IF;
	IF NOT p_claim OR recent_after >= uidnext - 1 THEN
		RETURN;
	END IF;

	-- messages to claim as \Recent: the 002 body, under the row lock
	SELECT mb.id, mb.recent_uid, mb.noselect INTO mailbox_id, recent_after, v_noselect
		FROM mailboxes mb WHERE mb.account_id = p_account_id AND mb.name = p_name
		FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	IF v_noselect THEN
		RAISE EXCEPTION 'mailbox is \Noselect' USING ERRCODE = 'PN007';
	END IF;
	UPDATE mailboxes mb SET recent_uid = mb.uidnext - 1
		WHERE mb.account_id = p_account_id AND mb.id = mailbox_id
			AND mb.recent_uid < mb.uidnext - 1;
	SELECT mb.uidvalidity, mb.uidnext, mb.highestmodseq
		INTO uidvalidity, uidnext, highestmodseq
		FROM mailboxes mb WHERE mb.account_id = p_account_id AND mb.id = mailbox_id;
	SELECT coalesce(string_agg(m.uid::text, ',' ORDER BY m.uid), ''),
			count(*) FILTER (WHERE m.flags & 1 = 0),
			min(m.uid) FILTER (WHERE m.flags & 1 = 0)
		INTO uids, unseen, first_unseen
		FROM messages m WHERE m.account_id = p_account_id AND m.mailbox_id = mailbox_id;
	SELECT coalesce(string_agg(x.k, ' ' ORDER BY lower(x.k)), '') INTO keywords
		FROM (SELECT DISTINCT ON (lower(k.k)) k.k FROM messages m, unnest(m.keywords) AS k (k)
			WHERE m.account_id = p_account_id AND m.mailbox_id = mailbox_id
			ORDER BY lower(k.k), k.k) AS x;
END $$;

CREATE OR REPLACE FUNCTION mailbox_changes(p_account_id bigint, p_mailbox_id bigint,
		p_since_modseq bigint, p_known_uidnext bigint, p_claim boolean)
	RETURNS TABLE (kind text, uid bigint, modseq bigint, flags integer,
		keywords text, extra bigint, uidvalidity bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_old bigint;
	v_sel boolean;
	v_next bigint;
	v_hms bigint;
	v_uidvalidity bigint;
BEGIN
	-- the fast path: nothing changed and nothing to claim, no lock
	SELECT mb.recent_uid, mb.noselect, mb.uidnext, mb.highestmodseq, mb.uidvalidity
		INTO v_old, v_sel, v_next, v_hms, v_uidvalidity
		FROM mailboxes mb WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id;
	IF NOT FOUND OR v_sel THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	IF v_next <= p_known_uidnext AND v_hms <= p_since_modseq
			AND (NOT p_claim OR v_old >= v_next - 1) THEN
		RETURN QUERY SELECT 'M'::text, v_next, v_hms, 0, NULL::text, v_old, v_uidvalidity;
		RETURN;
	END IF;

	-- something to report or to claim: the 002 body, under the row lock
	IF p_claim THEN
		SELECT mb.recent_uid, mb.noselect INTO v_old, v_sel FROM mailboxes mb
			WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id FOR UPDATE;
	ELSE
		SELECT mb.recent_uid, mb.noselect INTO v_old, v_sel FROM mailboxes mb
			WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id FOR SHARE;
	END IF;
	IF NOT FOUND OR v_sel THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	IF p_claim THEN
		UPDATE mailboxes mb SET recent_uid = mb.uidnext - 1
			WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id
				AND mb.recent_uid < mb.uidnext - 1;
	END IF;
	RETURN QUERY SELECT 'M'::text, mb.uidnext, mb.highestmodseq, 0, NULL::text, v_old,
			mb.uidvalidity
		FROM mailboxes mb WHERE mb.account_id = p_account_id AND mb.id = p_mailbox_id;
	RETURN QUERY SELECT 'E'::text, e.uid, e.modseq, 0, NULL::text, 0::bigint, 0::bigint
		FROM expunged_messages e
		WHERE e.account_id = p_account_id AND e.mailbox_id = p_mailbox_id
			AND e.modseq > p_since_modseq AND e.uid < p_known_uidnext
		ORDER BY e.uid;
	RETURN QUERY SELECT 'F'::text, m.uid, m.modseq, m.flags,
			array_to_string(m.keywords, ' '), 0::bigint, 0::bigint
		FROM messages m
		WHERE m.account_id = p_account_id AND m.mailbox_id = p_mailbox_id
			AND m.modseq > p_since_modseq AND m.uid < p_known_uidnext
		ORDER BY m.uid;
	RETURN QUERY SELECT 'N'::text, m.uid, m.modseq, m.flags,
			array_to_string(m.keywords, ' '), 0::bigint, 0::bigint
		FROM messages m
		WHERE m.account_id = p_account_id AND m.mailbox_id = p_mailbox_id
			AND m.uid >= p_known_uidnext
		ORDER BY m.uid;
END $$;
