-- Postern mail store, schema version 2: what the IMAP/POP3 mailbox
-- operations (backend/mailbox*.c, postern/mail-mailbox.h) need beyond 001.
--
-- * mailboxes.noselect: a mailbox DELETEd while it had inferior names keeps
--   its row as a \Noselect name (RFC 3501 6.3.4); its messages are gone.
--   CREATE of such a name makes it selectable again with a new UIDVALIDITY.
-- * mailboxes.recent_uid: the highest UID some session has already seen as
--   \Recent. A SELECT (or a poll of a selected mailbox) raises it to
--   uidnext - 1 under the mailbox row lock and gets the old value back: the
--   messages above the old value are \Recent for that session only, so
--   exactly one session sees each message as \Recent (RFC 3501 2.3.2).
-- * Functions for the multi-statement operations, so that each is one
--   round trip. They keep the row-lock order of 001 (a mailbox row first).
--   New error codes: PN007 operation not allowed on this name (delete
--   INBOX, select a \Noselect name, delete a \Noselect name that has
--   inferiors, rename into an inferior of itself); PN008 the name exists.

ALTER TABLE mailboxes ADD COLUMN noselect boolean NOT NULL DEFAULT false;
ALTER TABLE mailboxes ADD COLUMN recent_uid bigint NOT NULL DEFAULT 0
	CHECK (recent_uid >= 0);

-- Creates the missing superior names of p_name ('a' and 'a/b' for
-- 'a/b/c') as ordinary, unsubscribed mailboxes.
CREATE FUNCTION mailbox_create_parents(p_account_id bigint, p_name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 2 .. length(p_name) - 1 LOOP
		IF substr(p_name, i, 1) = '/' THEN
			INSERT INTO mailboxes (account_id, name, subscribed)
				VALUES (p_account_id, left(p_name, i - 1), false)
				ON CONFLICT (account_id, name) DO NOTHING;
		END IF;
	END LOOP;
END $$;

-- IMAP CREATE: the mailbox and its missing superiors (RFC 3501 6.3.3).
-- An existing \Noselect name becomes selectable with a new UIDVALIDITY.
-- Returns the mailbox id. PN001 unknown account, PN008 exists.
CREATE FUNCTION mailbox_create(p_account_id bigint, p_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint;
	v_noselect boolean;
BEGIN
	PERFORM 1 FROM accounts ac WHERE ac.id = p_account_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown account %', p_account_id USING ERRCODE = 'PN001';
	END IF;
	PERFORM mailbox_create_parents(p_account_id, p_name);
	SELECT mb.id, mb.noselect INTO v_id, v_noselect FROM mailboxes mb
		WHERE mb.account_id = p_account_id AND mb.name = p_name FOR UPDATE;
	IF FOUND THEN
		IF NOT v_noselect THEN
			RAISE EXCEPTION 'mailbox exists' USING ERRCODE = 'PN008';
		END IF;
		UPDATE mailboxes mb SET noselect = false,
				uidvalidity = nextval('mailbox_uidvalidity_seq'),
				recent_uid = mb.uidnext - 1
			WHERE mb.account_id = p_account_id AND mb.id = v_id;
		RETURN v_id;
	END IF;
	INSERT INTO mailboxes (account_id, name, subscribed)
		VALUES (p_account_id, p_name, false) RETURNING id INTO v_id;
	RETURN v_id;
END $$;

-- IMAP DELETE (RFC 3501 6.3.4): INBOX cannot be deleted (PN007); a name
-- with inferiors loses its messages and becomes \Noselect (PN007 when it
-- already is); otherwise the mailbox goes with its messages. Returns the
-- freed bodies (hex), as delete_mailbox().
CREATE FUNCTION mailbox_delete(p_account_id bigint, p_name text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint;
	v_noselect boolean;
	v_freed text[];
BEGIN
	IF p_name = 'INBOX' THEN
		RAISE EXCEPTION 'INBOX cannot be deleted' USING ERRCODE = 'PN007';
	END IF;
	SELECT mb.id, mb.noselect INTO v_id, v_noselect FROM mailboxes mb
		WHERE mb.account_id = p_account_id AND mb.name = p_name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	IF EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.account_id = p_account_id
			AND left(mb.name, length(p_name) + 1) = p_name || '/') THEN
		IF v_noselect THEN
			RAISE EXCEPTION 'name has inferior names' USING ERRCODE = 'PN007';
		END IF;
		SELECT e.freed_blobs INTO v_freed
			FROM expunge_messages(p_account_id, v_id, NULL, false) e;
		UPDATE mailboxes mb SET noselect = true
			WHERE mb.account_id = p_account_id AND mb.id = v_id;
		RETURN v_freed;
	END IF;
	RETURN delete_mailbox(p_account_id, v_id);
END $$;

-- IMAP RENAME (RFC 3501 6.3.5): the mailbox and its inferiors get the new
-- name, missing superiors of the new name are created. Renaming INBOX
-- creates the new mailbox and moves every INBOX message there (new UIDs;
-- the old ones are recorded as expunged); INBOX and its inferiors stay.
-- Returns the id of the mailbox now called p_new. PN001 unknown, PN008
-- exists, PN007 new name inside the old one (allowed for INBOX, which
-- stays: RENAME INBOX INBOX/old is fine).
CREATE FUNCTION mailbox_rename(p_account_id bigint, p_old text, p_new text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_id bigint;
	v_new bigint;
BEGIN
	SELECT mb.id INTO v_id FROM mailboxes mb
		WHERE mb.account_id = p_account_id AND mb.name = p_old FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	IF EXISTS (SELECT 1 FROM mailboxes mb WHERE mb.account_id = p_account_id
			AND mb.name = p_new) THEN
		RAISE EXCEPTION 'mailbox exists' USING ERRCODE = 'PN008';
	END IF;
	IF p_old <> 'INBOX' AND left(p_new, length(p_old) + 1) = p_old || '/' THEN
		RAISE EXCEPTION 'cannot rename into itself' USING ERRCODE = 'PN007';
	END IF;
	PERFORM mailbox_create_parents(p_account_id, p_new);
	IF p_old = 'INBOX' THEN
		INSERT INTO mailboxes (account_id, name, subscribed)
			VALUES (p_account_id, p_new, false) RETURNING id INTO v_new;
		PERFORM move_messages(p_account_id, v_id,
			ARRAY(SELECT m.uid FROM messages m WHERE m.account_id = p_account_id
				AND m.mailbox_id = v_id ORDER BY m.uid), v_new);
		RETURN v_new;
	END IF;
	UPDATE mailboxes mb SET name = p_new || substr(mb.name, length(p_old) + 1)
		WHERE mb.account_id = p_account_id AND (mb.name = p_old
			OR left(mb.name, length(p_old) + 1) = p_old || '/');
	RETURN v_id;
END $$;

-- IMAP SELECT / EXAMINE: the mailbox's state and its UIDs (ascending,
-- comma separated), read under the mailbox row lock so that no delivery
-- commits in between. p_claim (SELECT): the session takes the messages
-- above recent_after as its \Recent ones. keywords: the keywords in use,
-- space separated (keywords are IMAP atoms, which hold no space).
CREATE FUNCTION mailbox_select(p_account_id bigint, p_name text, p_claim boolean,
		OUT mailbox_id bigint, OUT uidvalidity bigint, OUT uidnext bigint,
		OUT highestmodseq bigint, OUT recent_after bigint, OUT uids text,
		OUT unseen bigint, OUT first_unseen bigint, OUT keywords text)
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
	v_noselect boolean;
BEGIN
	IF p_claim THEN
		SELECT mb.id, mb.recent_uid, mb.noselect INTO mailbox_id, recent_after, v_noselect
			FROM mailboxes mb WHERE mb.account_id = p_account_id AND mb.name = p_name
			FOR UPDATE;
	ELSE
		SELECT mb.id, mb.recent_uid, mb.noselect INTO mailbox_id, recent_after, v_noselect
			FROM mailboxes mb WHERE mb.account_id = p_account_id AND mb.name = p_name
			FOR SHARE;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown mailbox' USING ERRCODE = 'PN001';
	END IF;
	IF v_noselect THEN
		RAISE EXCEPTION 'mailbox is \Noselect' USING ERRCODE = 'PN007';
	END IF;
	IF p_claim THEN
		UPDATE mailboxes mb SET recent_uid = mb.uidnext - 1
			WHERE mb.account_id = p_account_id AND mb.id = mailbox_id
				AND mb.recent_uid < mb.uidnext - 1;
	END IF;
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

-- Changes of a selected mailbox since p_since_modseq, for NOOP/IDLE polls
-- and after a notification, read under the mailbox row lock. Rows:
--   'M' once: uid = uidnext, modseq = highestmodseq, extra = the old
--       recent_uid (messages above it are this session's \Recent ones
--       when p_claim), uidvalidity
--   'E' expunged UIDs below p_known_uidnext (modseq of the expunge)
--   'F' messages below p_known_uidnext changed after p_since_modseq
--   'N' messages from p_known_uidnext on (new to the session)
-- PN001 when the mailbox is gone.
CREATE FUNCTION mailbox_changes(p_account_id bigint, p_mailbox_id bigint,
		p_since_modseq bigint, p_known_uidnext bigint, p_claim boolean)
	RETURNS TABLE (kind text, uid bigint, modseq bigint, flags integer,
		keywords text, extra bigint, uidvalidity bigint)
LANGUAGE plpgsql AS $$
DECLARE
	v_old bigint;
	v_sel boolean;
BEGIN
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
