-- 003: an index for the delivery duplicate guard (backend/delivery.c): a
-- retried delivery is recognised by (account, mailbox, Message-ID) saved
-- within a short window. Before this index the guard read the mailbox's
-- newest messages one by one (about 1000 rows per delivery, measured in
-- bench/README.md "Findings"); now it is one probe per target mailbox.
-- Messages without a Message-ID are never compared, so they stay out of it.
CREATE INDEX messages_message_id ON messages (account_id, mailbox_id, message_id)
	WHERE message_id IS NOT NULL;
