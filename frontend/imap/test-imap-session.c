/* Unit tests of the IMAP session engine: whole sessions against a canned
 * daemon (test-imap-session-fake.h), each fed at once and one byte at a
 * time with the transcripts compared exactly; every state, pipelining, the
 * reply format of each command, IDLE with notifications during IDLE and
 * between commands, EXPUNGE deferral during FETCH/STORE/SEARCH, STARTTLS
 * command injection, LOGINDISABLED, literal refusal and malformed commands.
 */
#include "postern/testing.h"
#include "test-imap-session-fake.h"
#include "imap-session-private.h"

#define CAPS "IMAP4rev1 LITERAL+ SASL-IR IDLE UIDPLUS MOVE UNSELECT NAMESPACE ID " \
	"ENABLE SPECIAL-USE CHILDREN BINARY CONDSTORE"
#define LOGGED_IN "OK [CAPABILITY " CAPS "] Logged in\r\n"
#define SELECT_INBOX \
	"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n" \
	"* 3 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 2] First unseen.\r\n" \
	"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n" \
	"* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 6] Predicted next UID\r\n" \
	"* OK [HIGHESTMODSEQ 100] Highest\r\n"
#define LOGIN_SELECT "a LOGIN alice secret\r\nb SELECT INBOX\r\n"
#define LOGIN_SELECT_OUT "a " LOGGED_IN SELECT_INBOX "b OK [READ-WRITE] SELECT completed\r\n"

static void settings(struct imap_settings *set, bool trusted)
{
	imap_settings_defaults(set);
	set->trusted = trusted;
	set->starttls_available = true;
}

/* Runs a whole session; returns what the server sent after the greeting
 * (malloc'd). */
static char *run(const struct imap_settings *set, const char *input, bool bytewise,
		 bool *closed_r)
{
	struct fake f;
	fake_init(&f, set);
	fake_pump(&f);
	size_t greeting = pn_buf_len(&f.out);
	size_t len = strlen(input);
	if (bytewise) {
		for (size_t i = 0; i < len && !f.closed; i++)
			fake_feed(&f, input + i, 1);
	} else {
		fake_feed(&f, input, len);
	}
	size_t n = pn_buf_len(&f.out) - greeting;
	char *out = malloc(n + 1);
	memcpy(out, pn_buf_rptr(&f.out) + greeting, n);
	out[n] = '\0';
	if (closed_r != NULL)
		*closed_r = f.closed;
	fake_free(&f);
	return out;
}

static void expect_set(const struct imap_settings *set, const char *input,
		       const char *expected, bool closed, int line)
{
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		bool c;
		char *out = run(set, input, bytewise, &c);
		if (strcmp(out, expected) != 0 || c != closed) {
			fprintf(stderr, "line %d (%s): got:\n%s\n(closed %d) expected:\n%s\n",
				line, bytewise ? "byte at a time" : "at once", out, c, expected);
			pn_test_failures_++;
		}
		free(out);
	}
}

#define EXPECT(input, expected) do { \
	struct imap_settings set_; settings(&set_, true); \
	expect_set(&set_, input, expected, false, __LINE__); } while (0)
#define EXPECT_CLOSED(input, expected) do { \
	struct imap_settings set_; settings(&set_, true); \
	expect_set(&set_, input, expected, true, __LINE__); } while (0)

static void feed_str(struct fake *f, const char *s);
static struct fake *notify_session(void);
static void check_out(struct fake *f, const char *expected, int line);

PN_TEST(test_greeting)
{
	struct imap_settings set;
	struct fake f;

	settings(&set, false);
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_append(&f.out, "", 1);
	CHECK_STR((const char *)pn_buf_rptr(&f.out),
		  "* OK [CAPABILITY " CAPS " STARTTLS LOGINDISABLED] localhost Postern IMAP ready.\r\n");
	fake_free(&f);

	set.tls_active = true;
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_append(&f.out, "", 1);
	CHECK_STR((const char *)pn_buf_rptr(&f.out),
		  "* OK [CAPABILITY " CAPS " AUTH=PLAIN AUTH=LOGIN] localhost Postern IMAP ready.\r\n");
	fake_free(&f);

	set.hostname = "bad\r\nhost";
	CHECK(imap_session_new(&set) == NULL);
}

PN_TEST(test_logindisabled)
{
	struct imap_settings set;
	settings(&set, false);
	expect_set(&set,
		   "a CAPABILITY\r\nb LOGIN alice secret\r\nc AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"
		   "d SELECT INBOX\r\ne LOGOUT\r\n",
		   "* CAPABILITY " CAPS " STARTTLS LOGINDISABLED\r\na OK CAPABILITY completed\r\n"
		   "b NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS\r\n"
		   "c NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS\r\n"
		   "d BAD SELECT needs authentication first\r\n"
		   "* BYE Logging out\r\ne OK LOGOUT completed\r\n", true, __LINE__);
	/* The password literal is refused before it is sent. */
	expect_set(&set, "a LOGIN alice {6}\r\nb NOOP\r\n",
		   "a NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS\r\n"
		   "b OK NOOP completed\r\n", false, __LINE__);
}

PN_TEST(test_starttls_injection)
{
	struct imap_settings set;
	struct fake f;

	settings(&set, false);
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_reset(&f.out);
	/* The LOGIN pipelined behind STARTTLS is plaintext: never executed. */
	const char *in = "a STARTTLS\r\nb LOGIN alice secret\r\n";
	fake_feed(&f, in, strlen(in));
	pn_buf_append(&f.out, "", 1);
	CHECK_STR((const char *)pn_buf_rptr(&f.out), "a OK Begin TLS negotiation now\r\n");
	CHECK(f.start_tls_seen);
	CHECK_INT(f.requests, 0);
	/* Bytes arriving before the handshake completes are dropped. */
	CHECK_INT(imap_session_feed(f.s, "c NOOP\r\n", 8), 8);
	fake_pump(&f);
	pn_buf_reset(&f.out);
	imap_session_tls_started(f.s);
	in = "d CAPABILITY\r\ne STARTTLS\r\nf LOGIN alice secret\r\n";
	fake_feed(&f, in, strlen(in));
	pn_buf_append(&f.out, "", 1);
	CHECK_STR((const char *)pn_buf_rptr(&f.out),
		  "* CAPABILITY " CAPS " AUTH=PLAIN AUTH=LOGIN\r\nd OK CAPABILITY completed\r\n"
		  "e BAD TLS is already active\r\nf " LOGGED_IN);
	CHECK_INT(imap_session_state(f.s), IMAP_STATE_AUTHENTICATED);
	fake_free(&f);
}

PN_TEST(test_auth)
{
	EXPECT("a LOGIN alice wrong\r\nb LOGIN \"alice\" {6+}\r\nsecret\r\nc LOGIN x y\r\n",
	       "a NO [AUTHENTICATIONFAILED] Authentication failed\r\nb " LOGGED_IN
	       "c BAD Already authenticated\r\n");
	EXPECT("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n", "a " LOGGED_IN);
	EXPECT("a AUTHENTICATE PLAIN\r\nAGFsaWNlAHdyb25n\r\n"
	       "b AUTHENTICATE LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nc NOOP\r\n",
	       "+ \r\na NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
	       "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\nb " LOGGED_IN "c OK NOOP completed\r\n");
	/* SASL-IR with LOGIN, cancel, bad base64, unknown mechanism. */
	EXPECT("a AUTHENTICATE PLAIN\r\n*\r\nb AUTHENTICATE PLAIN !!!!\r\n"
	       "c AUTHENTICATE CRAM-MD5\r\nd AUTHENTICATE LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
	       "+ \r\na BAD Authentication cancelled\r\nb BAD Invalid base64 in SASL response\r\n"
	       "c NO Unsupported authentication mechanism\r\n+ UGFzc3dvcmQ6\r\nd " LOGGED_IN);
	/* authzid present; empty user. */
	EXPECT("a AUTHENTICATE PLAIN =\r\nb AUTHENTICATE LOGIN =\r\n"
	       "c AUTHENTICATE PLAIN dXNlcgB1c2VyAHB3\r\n",
	       "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
	       "b NO [AUTHENTICATIONFAILED] Authentication failed\r\n"
	       "c NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
}

PN_TEST(test_states)
{
	EXPECT("a FETCH 1 FLAGS\r\nb LIST \"\" *\r\nc NOOP\r\nd ID (\"name\" \"x\")\r\n"
	       "e LOGIN alice secret\r\nf FETCH 1 FLAGS\r\ng CHECK\r\nh STARTTLS\r\n",
	       "a BAD FETCH needs authentication first\r\nb BAD LIST needs authentication first\r\n"
	       "c OK NOOP completed\r\n* ID (\"name\" \"Postern\" \"vendor\" \"Postern\")\r\n"
	       "d OK ID completed\r\ne " LOGGED_IN "f BAD FETCH needs a selected mailbox\r\n"
	       "g BAD CHECK needs a selected mailbox\r\nh BAD Already authenticated\r\n");
	/* SELECT of a missing mailbox leaves the state AUTHENTICATED. */
	EXPECT_CLOSED(LOGIN_SELECT "c SELECT nope\r\nd FETCH 1 FLAGS\r\ne SELECT INBOX\r\nf UNSELECT\r\n"
	       "g FETCH 1 FLAGS\r\nh LOGOUT\r\n",
	       LOGIN_SELECT_OUT "c NO [NONEXISTENT] Mailbox does not exist\r\n"
	       "d BAD FETCH needs a selected mailbox\r\n" SELECT_INBOX
	       "e OK [READ-WRITE] SELECT completed\r\nf OK UNSELECT completed\r\n"
	       "g BAD FETCH needs a selected mailbox\r\n* BYE Logging out\r\nh OK LOGOUT completed\r\n");
}

PN_TEST(test_fetch)
{
	EXPECT(LOGIN_SELECT "c FETCH 1:* (FLAGS UID RFC822.SIZE)\r\n"
	       "d FETCH 2 (BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (subject from)]<0.20>)\r\n"
	       "e UID FETCH 1 FAST\r\nf FETCH 3 RFC822.HEADER\r\n",
	       LOGIN_SELECT_OUT
	       "* 1 FETCH (FLAGS (\\Seen) UID 1 RFC822.SIZE 152)\r\n"
	       "* 2 FETCH (FLAGS (\\Recent) UID 2 RFC822.SIZE 283)\r\n"
	       "* 3 FETCH (FLAGS (\\Deleted \\Flagged) UID 5 RFC822.SIZE 58)\r\n"
	       "c OK FETCH completed\r\n"
	       "* 2 FETCH (BODY[1] {10}\r\nFirst part BODY[HEADER.FIELDS (SUBJECT FROM)]<0> {20}\r\n"
	       "From: Bob <bob@examp)\r\nd OK FETCH completed\r\n"
	       "* 1 FETCH (UID 1 FLAGS (\\Seen) INTERNALDATE \"02-Jan-2024 11:00:00 +0100\" RFC822.SIZE 152)\r\n"
	       "e OK UID FETCH completed\r\n"
	       "* 3 FETCH (RFC822.HEADER {47}\r\nFrom: carol@example.com\r\nSubject: Delete me\r\n\r\n)\r\n"
	       "f OK FETCH completed\r\n");
	/* ENVELOPE, BODY, BODYSTRUCTURE computed from the message. */
	EXPECT(LOGIN_SELECT "c FETCH 1 (ENVELOPE BODY BODYSTRUCTURE)\r\n",
	       LOGIN_SELECT_OUT
	       "* 1 FETCH (ENVELOPE (\"Mon, 1 Jan 2024 10:00:00 +0000\" \"Hello\" "
	       "((\"Alice\" NIL \"alice\" \"example.com\")) ((\"Alice\" NIL \"alice\" \"example.com\")) "
	       "((\"Alice\" NIL \"alice\" \"example.com\")) ((NIL NIL \"bob\" \"example.com\")) NIL NIL NIL "
	       "\"<1@example.com>\") BODY (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 1) "
	       "BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 13 1 NIL NIL NIL NIL))\r\n"
	       "c OK FETCH completed\r\n");
	/* Non-PEEK body fetch sets \Seen and shows FLAGS; partial past the
	 * end; a missing part is empty; TEXT. */
	EXPECT(LOGIN_SELECT "c FETCH 2 (BODY[2] BODY[1]<100.5> BODY[9])\r\nd FETCH 1 RFC822.TEXT\r\n",
	       LOGIN_SELECT_OUT
	       "* 2 FETCH (BODY[2] {13}\r\n<p>Second</p> BODY[1]<100> {0}\r\n BODY[9] {0}\r\n "
	       "FLAGS (\\Recent \\Seen))\r\nc OK FETCH completed\r\n"
	       "* 1 FETCH (RFC822.TEXT {13}\r\nHello world\r\n FLAGS (\\Seen))\r\nd OK FETCH completed\r\n");
	/* EXAMINE: read-only, no \Seen. */
	EXPECT("a LOGIN alice secret\r\nb EXAMINE INBOX\r\nc FETCH 2 (BODY[1])\r\n",
	       "a " LOGGED_IN
	       "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	       "* 3 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 2] First unseen.\r\n"
	       "* OK [PERMANENTFLAGS ()] Flags permitted.\r\n"
	       "* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 6] Predicted next UID\r\n"
	       "* OK [HIGHESTMODSEQ 100] Highest\r\n"
	       "b OK [READ-ONLY] EXAMINE completed\r\n"
	       "* 2 FETCH (BODY[1] {10}\r\nFirst part)\r\nc OK FETCH completed\r\n");
	/* Errors. */
	EXPECT(LOGIN_SELECT "c FETCH 4 FLAGS\r\nd FETCH 1 (FLAGS BOGUS)\r\ne FETCH 1 BINARY\r\n"
	       "f FETCH 1 BODY[HEADER.FIELDS]\r\ng FETCH 1 BODY[1.X]\r\nh FETCH 1\r\n"
	       "i UID FETCH 100:200 FLAGS\r\nj FETCH 1 ()\r\n",
	       LOGIN_SELECT_OUT
	       "c BAD Message sequence number out of range\r\nd BAD Unknown FETCH item\r\n"
	       "e BAD Unknown FETCH item\r\n"
	       "f BAD HEADER.FIELDS needs a list of field names\r\n"
	       "g BAD unknown section\r\n"
	       "h BAD Expected FETCH sequence-set items\r\n"
	       "i OK UID FETCH completed\r\nj BAD Empty FETCH item list\r\n");
}

PN_TEST(test_binary)
{
	static const char b64msg[] =
		"Subject: att\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
		"--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
		"caf=C3=A9\r\n"
		"--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"AAEC\r\n"
		"--x\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
		"zzz\r\n--x--\r\n";
	struct imap_settings set;
	struct fake f;

	settings(&set, true);
	fake_init(&f, &set);
	f.msgs[2].data = b64msg;
	feed_str(&f, LOGIN_SELECT);
	pn_buf_reset(&f.out);
	feed_str(&f, "c FETCH 3 (BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2]<1.5>)\r\n"
		 "d FETCH 3 BINARY.PEEK[3]\r\ne FETCH 3 BINARY[1.MIME]\r\nf FETCH 1 BINARY.SIZE[]\r\n");
	check_out(&f, "* 3 FETCH (BINARY[1] {5}\r\ncaf\xc3\xa9 BINARY.SIZE[2] 3 BINARY[2]<1> {2}\r\n\x01\x02)\r\n"
		  "c OK FETCH completed\r\n* 3 FETCH (BINARY[3] NIL)\r\n"
		  "d NO [UNKNOWN-CTE] Cannot decode a part's transfer encoding\r\n"
		  "e BAD BINARY takes only a part number\r\n"
		  "* 1 FETCH (BINARY.SIZE[] 152)\r\nf OK FETCH completed\r\n", __LINE__);
	/* NUL in the data: literal8. */
	feed_str(&f, "g FETCH 3 BINARY.PEEK[2]\r\n");
	static const char want[] = "* 3 FETCH (BINARY[2] ~{3}\r\n\0\1\2)\r\ng OK FETCH completed\r\n";
	CHECK_MEM(pn_buf_rptr(&f.out), pn_buf_len(&f.out), want, sizeof(want) - 1);
	fake_free(&f);
}

PN_TEST(test_condstore)
{
	struct fake *f = notify_session();
	feed_str(f, "c SELECT INBOX (CONDSTORE)\r\n");
	pn_buf_reset(&f->out);
	feed_str(f, "d FETCH 1:* (FLAGS) (CHANGEDSINCE 15)\r\ne UID FETCH 1 MODSEQ\r\n"
		 "f SEARCH MODSEQ 20\r\ng UID SEARCH MODSEQ \"/flags/\\\\draft\" all 50 UID 1\r\n"
		 "h STATUS INBOX (HIGHESTMODSEQ MESSAGES)\r\n"
		 "i STORE 2 +FLAGS.SILENT (\\Seen)\r\nj UID STORE 1,5 (UNCHANGEDSINCE 10) +FLAGS (Junk)\r\n"
		 "k STORE 1 (UNCHANGEDSINCE 0) FLAGS ()\r\nl FETCH 1 (FLAGS) (CHANGEDSINCE x)\r\n"
		 "m SEARCH MODSEQ \"/x\" all 1\r\n");
	check_out(f, "* 2 FETCH (FLAGS (\\Recent) MODSEQ (20))\r\n"
		  "* 3 FETCH (FLAGS (\\Deleted \\Flagged) MODSEQ (50))\r\nd OK FETCH completed\r\n"
		  "* 1 FETCH (UID 1 MODSEQ (10))\r\ne OK UID FETCH completed\r\n"
		  "* SEARCH 2 3 (MODSEQ 50)\r\nf OK SEARCH completed\r\n"
		  "* SEARCH\r\ng OK UID SEARCH completed\r\n"
		  "* STATUS \"INBOX\" (HIGHESTMODSEQ 100 MESSAGES 3)\r\nh OK STATUS completed\r\n"
		  "i OK STORE completed\r\n"
		  "* 1 FETCH (UID 1 FLAGS (\\Seen Junk) MODSEQ (102))\r\n"
		  "j OK [MODIFIED 5] Conditional UID STORE failed\r\n"
		  "k OK [MODIFIED 1] Conditional STORE failed\r\n"
		  "l BAD Expected FETCH modifier (CHANGEDSINCE modseq)\r\n"
		  "m BAD Invalid MODSEQ entry\r\n", __LINE__);
	/* Flag changes of others carry MODSEQ once CONDSTORE is on. */
	struct imap_notify n = { .type = IMAP_NOTIFY_FLAGS, .uid = 2, .modseq = 200 };
	CHECK_INT(imap_session_notify(f->s, &n), 0);
	feed_str(f, "n NOOP\r\n");
	check_out(f, "* 2 FETCH (UID 2 MODSEQ (200) FLAGS ())\r\nn OK NOOP completed\r\n", __LINE__);
	/* A mailbox without MODSEQs. */
	f->highestmodseq = 0;
	feed_str(f, "o EXAMINE INBOX\r\n");
	pn_buf_append(&f->out, "", 1);
	CHECK(strstr((const char *)pn_buf_rptr(&f->out), "* OK [NOMODSEQ] No permanent modsequences\r\n") != NULL);
	pn_buf_reset(&f->out);
	feed_str(f, "p FETCH 1 MODSEQ\r\nq SEARCH MODSEQ 1\r\nr FETCH 1 FLAGS\r\n");
	check_out(f, "p BAD This mailbox has no mod-sequences (NOMODSEQ)\r\n"
		  "q BAD This mailbox has no mod-sequences (NOMODSEQ)\r\n"
		  "* 1 FETCH (FLAGS (\\Seen Junk))\r\nr OK FETCH completed\r\n", __LINE__);
	fake_free(f);
}

PN_TEST(test_mailboxes)
{
	EXPECT("a LOGIN alice secret\r\nb LIST \"\" \"*\"\r\nc LIST \"\" %\r\nd LIST \"\" \"\"\r\n"
	       "e LSUB \"\" \"*\"\r\nf LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN)\r\n"
	       "g LIST \"Archive/\" \"%\"\r\nh LIST \"\" \"inbox\"\r\ni LIST Work/ %\r\n",
	       "a " LOGGED_IN
	       "* LIST (\\HasChildren \\Archive) \"/\" \"Archive\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Archive-old\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Archive/2024\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Caf&AOk-\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
	       "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
	       "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Work/Projects/A\"\r\n"
	       "b OK LIST completed\r\n"
	       "* LIST (\\HasChildren \\Archive) \"/\" \"Archive\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Archive-old\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Caf&AOk-\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
	       "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
	       "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
	       "* LIST (\\Noselect \\HasChildren) \"/\" \"Work\"\r\n"
	       "c OK LIST completed\r\n"
	       "* LIST (\\Noselect) \"/\" \"\"\r\nd OK LIST completed\r\n"
	       "* LSUB () \"/\" \"INBOX\"\r\n* LSUB () \"/\" \"Sent\"\r\ne OK LSUB completed\r\n"
	       "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"INBOX\"\r\n"
	       "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"\r\nf OK LIST completed\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Archive/2024\"\r\ng OK LIST completed\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\nh OK LIST completed\r\n"
	       "* LIST (\\Noselect \\HasChildren) \"/\" \"Work/Projects\"\r\ni OK LIST completed\r\n");
	/* RFC 6154 3: the SPECIAL-USE selection option keeps only mailboxes
	 * with a special-use attribute (with SUBSCRIBED: both must hold). */
	EXPECT("a LOGIN alice secret\r\nb LIST (SPECIAL-USE) \"\" \"*\"\r\n"
	       "c LIST (SPECIAL-USE SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE)\r\n"
	       "d LIST \"\" \"*\" RETURN (SPECIAL-USE)\r\n",
	       "a " LOGGED_IN
	       "* LIST (\\HasChildren \\Archive) \"/\" \"Archive\"\r\n"
	       "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
	       "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
	       "b OK LIST completed\r\n"
	       "* LIST (\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\"\r\n"
	       "c OK LIST completed\r\n"
	       "* LIST (\\HasChildren \\Archive) \"/\" \"Archive\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Archive-old\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Archive/2024\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Caf&AOk-\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"INBOX\"\r\n"
	       "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n"
	       "* LIST (\\HasNoChildren \\Trash) \"/\" \"Trash\"\r\n"
	       "* LIST (\\HasNoChildren) \"/\" \"Work/Projects/A\"\r\n"
	       "d OK LIST completed\r\n");
	EXPECT("a LOGIN alice secret\r\ni STATUS INBOX (UIDNEXT MESSAGES UNSEEN)\r\n"
	       "j STATUS nope (MESSAGES)\r\nk CREATE Sent\r\nl CREATE foo/\r\nm DELETE inbox\r\n"
	       "n RENAME a INBOX\r\no SUBSCRIBE \"Caf&AOk-\"\r\np CREATE \"bad&name\"\r\n"
	       "q UNSUBSCRIBE Sent\r\nr RENAME Sent Old/Sent\r\ns DELETE Trash\r\n"
	       "t STATUS INBOX (BOGUS)\r\nu CREATE \"a//b\"\r\nv NAMESPACE\r\nw ENABLE CONDSTORE\r\nx ENABLE\r\n",
	       "a " LOGGED_IN
	       "* STATUS \"INBOX\" (UIDNEXT 6 MESSAGES 3 UNSEEN 2)\r\ni OK STATUS completed\r\n"
	       "j NO [NONEXISTENT] Mailbox does not exist\r\n"
	       "k NO [ALREADYEXISTS] Mailbox already exists\r\nl OK CREATE completed\r\n"
	       "m NO [CANNOT] INBOX cannot be deleted\r\nn NO [ALREADYEXISTS] INBOX already exists\r\n"
	       "o OK SUBSCRIBE completed\r\np NO Mailbox name is not valid modified UTF-7\r\n"
	       "q OK UNSUBSCRIBE completed\r\nr OK RENAME completed\r\ns OK DELETE completed\r\n"
	       "t BAD Unknown STATUS item\r\nu NO Invalid mailbox name\r\n"
	       "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\nv OK NAMESPACE completed\r\n"
	       "* ENABLED CONDSTORE\r\nw OK ENABLE completed\r\nx BAD Expected ENABLE capability...\r\n");
}

PN_TEST(test_append)
{
	EXPECT("a LOGIN alice secret\r\n"
	       "q APPEND INBOX (\\Seen) \"01-Feb-2024 10:00:00 +0000\" {5}\r\nhello\r\n"
	       "r APPEND nosuch {3+}\r\nabc\r\ns APPEND INBOX {0+}\r\n\r\n"
	       "t APPEND INBOX (\\Recent) {1+}\r\nx\r\nu APPEND INBOX \"bad date\" {1+}\r\nx\r\n"
	       "v APPEND Sent x\r\n",
	       "a " LOGGED_IN "+ OK\r\nq OK [APPENDUID 42 6] APPEND completed\r\n"
	       "r NO [TRYCREATE] Mailbox does not exist\r\ns NO Cannot append an empty message\r\n"
	       "t BAD Invalid flag\r\nu BAD Invalid date-time\r\n"
	       "v BAD Expected APPEND mailbox [(flags)] [date-time] literal\r\n");

	/* A large message arrives as streamed literal chunks. */
	struct imap_settings set;
	struct fake f;
	settings(&set, true);
	set.max_append = 200000;
	fake_init(&f, &set);
	const char *in = "a LOGIN alice secret\r\nb APPEND INBOX {100000}\r\n";
	fake_feed(&f, in, strlen(in));
	pn_buf_reset(&f.out);
	char *big = malloc(100000);
	memset(big, 'x', 100000);
	memcpy(big, "Subject: big\r\n\r\n", 16);
	for (size_t i = 0; i < 100000; i += 4096)
		fake_feed(&f, big + i, 100000 - i < 4096 ? 100000 - i : 4096);
	fake_feed(&f, "\r\nc APPEND INBOX {300000}\r\nd NOOP\r\n", 35);
	pn_buf_append(&f.out, "", 1);
	CHECK_STR((const char *)pn_buf_rptr(&f.out),
		  "b OK [APPENDUID 42 6] APPEND completed\r\nc NO [TOOBIG] Literal too large\r\n"
		  "d OK NOOP completed\r\n");
	CHECK_INT(f.appended_len, 100000);
	free(big);
	fake_free(&f);
}

PN_TEST(test_search)
{
	EXPECT(LOGIN_SELECT "c SEARCH ALL\r\nd SEARCH UNSEEN\r\ne UID SEARCH SUBJECT cafe\r\n"
	       "f SEARCH OR FROM alice BODY second\r\ng SEARCH NOT (DELETED) SINCE 2-Jan-2024\r\n"
	       "h SEARCH SENTBEFORE 2-Jan-2024 LARGER 100\r\n"
	       "i SEARCH CHARSET UTF-8 SUBJECT {5}\r\ncaf\xc3\xa9\r\nj SEARCH CHARSET KOI8-R ALL\r\n"
	       "k SEARCH 2:* UID 1:2\r\nl SEARCH NEW\r\nm SEARCH HEADER Message-ID 1@ex\r\n"
	       "n SEARCH TEXT \"hello world\"\r\no SEARCH FOO\r\np UID SEARCH KEYWORD $x\r\n"
	       "q SEARCH OLD SMALLER 100\r\nr SEARCH BEFORE 1-Jan-2024 ON 3-Jan-2024\r\n"
	       "s SEARCH SENTON 02-Jan-2024 SENTSINCE 2-Jan-2024 TO bob CC x\r\n"
	       "t SEARCH ANSWERED FLAGGED DRAFT\r\nu SEARCH UNANSWERED UNFLAGGED UNDRAFT UNDELETED SEEN\r\n"
	       "v SEARCH BCC x UNKEYWORD y RECENT\r\nw SEARCH OR\r\nx SEARCH SINCE 31-Foo-2024\r\n",
	       LOGIN_SELECT_OUT
	       "* SEARCH 1 2 3\r\nc OK SEARCH completed\r\n* SEARCH 2 3\r\nd OK SEARCH completed\r\n"
	       "* SEARCH\r\ne OK UID SEARCH completed\r\n* SEARCH 1 2\r\nf OK SEARCH completed\r\n"
	       "* SEARCH 1 2\r\ng OK SEARCH completed\r\n* SEARCH 1\r\nh OK SEARCH completed\r\n"
	       "+ OK\r\n* SEARCH 2\r\ni OK SEARCH completed\r\n"
	       "j NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n"
	       "* SEARCH 2\r\nk OK SEARCH completed\r\n* SEARCH 2\r\nl OK SEARCH completed\r\n"
	       "* SEARCH 1\r\nm OK SEARCH completed\r\n* SEARCH 1\r\nn OK SEARCH completed\r\n"
	       "o BAD Unknown search key\r\n* SEARCH\r\np OK UID SEARCH completed\r\n"
	       "* SEARCH 3\r\nq OK SEARCH completed\r\n* SEARCH\r\nr OK SEARCH completed\r\n"
	       "* SEARCH\r\ns OK SEARCH completed\r\n* SEARCH\r\nt OK SEARCH completed\r\n"
	       "* SEARCH 1\r\nu OK SEARCH completed\r\n* SEARCH\r\nv OK SEARCH completed\r\n"
	       "w BAD Missing search key argument\r\nx BAD Invalid date (expected d-Mon-yyyy)\r\n");
}

PN_TEST(test_store_copy_expunge)
{
	EXPECT(LOGIN_SELECT "p STORE 1:2 +FLAGS (\\Flagged $Label1)\r\n"
	       "q UID STORE 2 -FLAGS.SILENT \\Flagged\r\nr STORE 1 FLAGS \\Answered\r\n"
	       "s COPY 1:2 Trash\r\nt UID COPY 5 Nope\r\nu MOVE 1 Trash\r\nv EXPUNGE\r\n"
	       "w FETCH 1:* UID\r\nx UID EXPUNGE 2\r\ny UID MOVE 2 Trash\r\nz FETCH 1 FLAGS\r\n",
	       LOGIN_SELECT_OUT
	       "* 1 FETCH (FLAGS (\\Seen \\Flagged $Label1))\r\n"
	       "* 2 FETCH (FLAGS (\\Recent \\Flagged $Label1))\r\np OK STORE completed\r\n"
	       "q OK UID STORE completed\r\n* 1 FETCH (FLAGS (\\Answered))\r\nr OK STORE completed\r\n"
	       "s OK [COPYUID 77 1:2 200:201] COPY completed\r\n"
	       "t NO [TRYCREATE] Mailbox does not exist\r\n"
	       "* OK [COPYUID 77 1 200] Moved\r\n* 1 EXPUNGE\r\nu OK MOVE completed\r\n"
	       "* 2 EXPUNGE\r\nv OK EXPUNGE completed\r\n* 1 FETCH (UID 2)\r\nw OK FETCH completed\r\n"
	       "x OK UID EXPUNGE completed\r\n* OK [COPYUID 77 2 200] Moved\r\n* 1 EXPUNGE\r\n"
	       "y OK UID MOVE completed\r\nz BAD Message sequence number out of range\r\n");
	EXPECT(LOGIN_SELECT "c UID STORE 2 +FLAGS (\\Recent)\r\nd STORE 1 FLAGS.FOO (x)\r\n"
	       "e STORE 1 (UNCHANGEDSINCE 5) FLAGS (x)\r\nf STORE 1 +FLAGS (\\Bogus)\r\n"
	       "g UID STORE 1 +FLAGS \\Seen Junk\r\nh CLOSE\r\ni SELECT INBOX\r\n",
	       LOGIN_SELECT_OUT
	       "c BAD Invalid flag\r\nd BAD Expected FLAGS, +FLAGS or -FLAGS\r\n"
	       "e OK [MODIFIED 1] Conditional STORE failed\r\nf BAD Invalid flag\r\n"
	       "* 1 FETCH (UID 1 FLAGS (\\Seen Junk) MODSEQ (101))\r\ng OK UID STORE completed\r\n"
	       "h OK CLOSE completed\r\n"
	       "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	       "* 2 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 2] First unseen.\r\n"
	       "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"
	       "* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 6] Predicted next UID\r\n"
	       "* OK [HIGHESTMODSEQ 101] Highest\r\n"
	       "i OK [READ-WRITE] SELECT completed\r\n");
}

/* Session driven by hand for notifications. */
static struct fake *notify_session(void)
{
	static struct fake f;
	struct imap_settings set;
	settings(&set, true);
	fake_init(&f, &set);
	fake_feed(&f, LOGIN_SELECT, strlen(LOGIN_SELECT));
	pn_buf_reset(&f.out);
	return &f;
}

static void feed_str(struct fake *f, const char *s)
{
	fake_feed(f, s, strlen(s));
}

static void check_out(struct fake *f, const char *expected, int line)
{
	pn_buf_append(&f->out, "", 1);
	if (strcmp((const char *)pn_buf_rptr(&f->out), expected) != 0) {
		fprintf(stderr, "line %d: got:\n%s\nexpected:\n%s\n", line,
			(const char *)pn_buf_rptr(&f->out), expected);
		pn_test_failures_++;
	}
	pn_buf_reset(&f->out);
}

static void notify(struct fake *f, enum imap_notify_type t, uint32_t uid,
		   const char *flag)
{
	const char *flags[1] = { flag };
	struct imap_notify n = { .type = t, .uid = uid, .flags = flags,
				 .flag_count = flag ? 1 : 0 };
	CHECK_INT(imap_session_notify(f->s, &n), 0);
	fake_pump(f);
}

PN_TEST(test_idle)
{
	struct fake *f = notify_session();
	feed_str(f, "c IDLE\r\n");
	check_out(f, "+ idling\r\n", __LINE__);
	CHECK(imap_session_idling(f->s));
	struct imap_notify nr = { .type = IMAP_NOTIFY_EXISTS, .uid = 6, .recent = true };
	CHECK_INT(imap_session_notify(f->s, &nr), 0);
	fake_pump(f);
	check_out(f, "* 4 EXISTS\r\n* 2 RECENT\r\n", __LINE__);
	notify(f, IMAP_NOTIFY_EXPUNGE, 1, NULL);
	check_out(f, "* 1 EXPUNGE\r\n", __LINE__);
	notify(f, IMAP_NOTIFY_FLAGS, 5, "\\Seen");
	check_out(f, "* 2 FETCH (UID 5 FLAGS (\\Seen))\r\n", __LINE__);
	/* Old or unknown UIDs are ignored. */
	notify(f, IMAP_NOTIFY_EXISTS, 3, NULL);
	notify(f, IMAP_NOTIFY_EXPUNGE, 99, NULL);
	check_out(f, "", __LINE__);
	feed_str(f, "DONE\r\nd FETCH 2 UID\r\ne IDLE\r\nnope\r\n");
	check_out(f, "c OK IDLE terminated\r\n* 2 FETCH (UID 5)\r\nd OK FETCH completed\r\n"
		  "+ idling\r\ne BAD Expected DONE to end IDLE\r\n", __LINE__);
	/* Drain during IDLE. */
	feed_str(f, "f IDLE\r\n");
	imap_session_shutdown(f->s);
	fake_pump(f);
	check_out(f, "+ idling\r\n* BYE [UNAVAILABLE] Server shutting down\r\n", __LINE__);
	CHECK(f->closed);
	fake_free(f);
}

PN_TEST(test_notify_between_commands)
{
	struct fake *f = notify_session();
	/* Nothing is sent while no command runs. */
	notify(f, IMAP_NOTIFY_EXISTS, 6, NULL);
	notify(f, IMAP_NOTIFY_EXPUNGE, 1, NULL);
	notify(f, IMAP_NOTIFY_FLAGS, 2, "\\Answered");
	check_out(f, "", __LINE__);
	/* FETCH: EXISTS and FETCH flags yes, EXPUNGE deferred (RFC 3501
	 * 7.4.1), so sequence numbers stay as the client knows them. */
	feed_str(f, "c FETCH 1 UID\r\n");
	check_out(f, "* 1 FETCH (UID 1)\r\n* 4 EXISTS\r\n* 1 RECENT\r\n* 2 FETCH (UID 2 FLAGS (\\Answered))\r\n"
		  "c OK FETCH completed\r\n", __LINE__);
	feed_str(f, "d STORE 1 +FLAGS.SILENT (x)\r\ne SEARCH ALL\r\n");
	check_out(f, "d OK STORE completed\r\n* SEARCH 1 2 3 4\r\ne OK SEARCH completed\r\n", __LINE__);
	/* UID FETCH may carry it; a new message at the same time. */
	notify(f, IMAP_NOTIFY_EXISTS, 7, NULL);
	feed_str(f, "f UID FETCH 2 UID\r\n");
	check_out(f, "* 2 FETCH (UID 2)\r\n* 1 EXPUNGE\r\n* 4 EXISTS\r\n* 1 RECENT\r\nf OK UID FETCH completed\r\n",
		  __LINE__);
	/* An added-then-removed message is never shown. */
	notify(f, IMAP_NOTIFY_EXISTS, 8, NULL);
	notify(f, IMAP_NOTIFY_EXPUNGE, 8, NULL);
	/* NOOP polls the daemon, which reports changes. */
	f->poll_notify[0] = (struct imap_notify){ .type = IMAP_NOTIFY_EXPUNGE, .uid = 5 };
	f->poll_n = 1;
	feed_str(f, "g NOOP\r\nh CHECK\r\n");
	check_out(f, "* 2 EXPUNGE\r\ng OK NOOP completed\r\nh OK CHECK completed\r\n", __LINE__);
	fake_free(f);
}

PN_TEST(test_expunge_order)
{
	struct fake *f = notify_session();
	/* Reported in any order, answered with consistent numbers. */
	notify(f, IMAP_NOTIFY_EXPUNGE, 5, NULL);
	notify(f, IMAP_NOTIFY_EXPUNGE, 1, NULL);
	notify(f, IMAP_NOTIFY_EXPUNGE, 1, NULL);
	feed_str(f, "c NOOP\r\nd FETCH 1 UID\r\ne FETCH 2 UID\r\n");
	check_out(f, "* 1 EXPUNGE\r\n* 2 EXPUNGE\r\nc OK NOOP completed\r\n"
		  "* 1 FETCH (UID 2)\r\nd OK FETCH completed\r\n"
		  "e BAD Message sequence number out of range\r\n", __LINE__);
	fake_free(f);
}

PN_TEST(test_pipelining)
{
	/* Everything in one chunk: requests one at a time, in order. */
	EXPECT_CLOSED("a LOGIN alice secret\r\nb SELECT INBOX\r\nc FETCH 1 UID\r\nd STATUS INBOX (MESSAGES)\r\n"
	       "e NOOP\r\nf LOGOUT\r\ng NOOP\r\n",
	       LOGIN_SELECT_OUT "* 1 FETCH (UID 1)\r\nc OK FETCH completed\r\n"
	       "* STATUS \"INBOX\" (MESSAGES 3)\r\nd OK STATUS completed\r\ne OK NOOP completed\r\n"
	       "* BYE Logging out\r\nf OK LOGOUT completed\r\n");
}

PN_TEST(test_byte_at_a_time)
{
	struct imap_settings set;
	struct fake f;
	const char *in = "a1 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n";

	settings(&set, true);
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_reset(&f.out);
	size_t len = strlen(in);
	for (size_t i = 0; i < len; i++) {
		fake_feed(&f, in + i, 1);
		/* Output only after "{5}\r\n" and at the very end. */
		if (i == 13)
			check_out(&f, "+ OK\r\n", __LINE__);
		else if (i + 1 < len)
			CHECK_INT(pn_buf_len(&f.out), 0);
	}
	CHECK_INT(f.requests, 1);
	check_out(&f, "a1 " LOGGED_IN, __LINE__);
	fake_free(&f);
}

PN_TEST(test_literal_refusal)
{
	/* Before authentication only LOGIN/AUTHENTICATE get small literals. */
	EXPECT("a LOGIN {100000}\r\nb SELECT {5}\r\nc LOGIN {5}\r\nalice {6}\r\nsecret\r\n"
	       "d APPEND INBOX {5}\r\n",
	       "a NO [TOOBIG] Literal too large\r\nb BAD Literals are not allowed before authentication\r\n"
	       "+ OK\r\n+ OK\r\nc " LOGGED_IN "+ OK\r\n");
	/* APPEND over the limit: NO before the client sends the data. */
	EXPECT("a LOGIN alice secret\r\nb APPEND INBOX {999999999}\r\nc NOOP\r\n",
	       "a " LOGGED_IN "b NO [TOOBIG] Literal too large\r\nc OK NOOP completed\r\n");
	/* APPEND refused at the command (bad mailbox) for a streamed literal. */
	EXPECT("a LOGIN alice secret\r\nb APPEND \"&\" {70000}\r\nc NOOP\r\n",
	       "a " LOGGED_IN "b NO Mailbox name is not valid modified UTF-7\r\nc OK NOOP completed\r\n");
}

PN_TEST(test_malformed)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "\r\n", "* BAD" },
		{ "a\r\n", "a BAD" },
		{ "a FOO\r\n", "a BAD Unknown command FOO\r\n" },
		{ "a NOOP x\r\n", "a BAD Unexpected arguments to NOOP\r\n" },
		{ "a LOGIN\r\n", "a BAD Already authenticated\r\n" },
		{ "a CREATE\r\n", "a BAD Expected a mailbox name\r\n" },
		{ "a SELECT\r\n", "a BAD Expected SELECT mailbox\r\n" },
		{ "a SELECT (x)\r\n", "a BAD Expected a mailbox name\r\n" },
		{ "a SELECT x/\r\n", "a NO Invalid mailbox name\r\n" },
		{ "a CREATE (x/)\r\n", "a BAD Expected a mailbox name\r\n" },
		{ "a FETCH\r\n", "a BAD Expected FETCH sequence-set items\r\n" },
		{ "a FETCH x FLAGS\r\n", "a BAD" },
		{ "a FETCH 0 FLAGS\r\n", "a BAD" },
		{ "a FETCH 1 BODY[\r\n", "a BAD" },
		{ "a FETCH 1 BINARY.SIZE[1]<0.1>\r\n", "a BAD BINARY takes only a part number\r\n" },
		{ "a FETCH 1 BODYX[1]\r\n", "a BAD Unknown FETCH section item\r\n" },
		{ "a STORE 1\r\n", "a BAD" },
		{ "a COPY 1\r\n", "a BAD" },
		{ "a UID\r\n", "a BAD Expected UID FETCH/SEARCH/STORE/COPY/MOVE/EXPUNGE\r\n" },
		{ "a UID FOO 1\r\n", "a BAD Unknown or malformed UID command\r\n" },
		{ "a UID EXPUNGE\r\n", "a BAD Unknown or malformed UID command\r\n" },
		{ "a SEARCH\r\n", "a BAD Missing search key\r\n" },
		{ "a SEARCH (\r\n", "a BAD" },
		{ "a SEARCH HEADER\r\n", "a BAD Missing search key argument\r\n" },
		{ "a SEARCH LARGER x\r\n", "a BAD Expected a number\r\n" },
		{ "a LIST\r\n", "a BAD Expected LIST reference pattern\r\n" },
		{ "a LIST (FOO) \"\" *\r\n", "a BAD Unknown LIST selection option\r\n" },
		{ "a STATUS INBOX\r\n", "a BAD Expected STATUS mailbox (items)\r\n" },
		{ "a ID (\"a\")\r\n", "a BAD Expected ID NIL or a list of field/value pairs\r\n" },
		{ "a APPEND\r\n", "a BAD Expected APPEND mailbox [(flags)] [date-time] literal\r\n" },
		{ "a \"x\r\n", "a BAD" },
		{ "a NOOP\n", "a BAD" },
		{ "a RENAME x\r\n", "a BAD Expected RENAME old-name new-name\r\n" },
		{ "a SEARCH NOT\r\n", "a BAD Missing search key argument\r\n" },
		{ "a STARTTLS\r\n", "a BAD Already authenticated\r\n" },
		{ "a ENABLE X\r\n", "a BAD ENABLE is not allowed with a mailbox selected\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char in[512];
		snprintf(in, sizeof(in), LOGIN_SELECT "%sz NOOP\r\n", cases[i].in);
		struct imap_settings set;
		settings(&set, true);
		bool closed;
		char *out = run(&set, in, false, &closed);
		const char *rest = out + strlen(LOGIN_SELECT_OUT);
		bool ok = strncmp(out, LOGIN_SELECT_OUT, strlen(LOGIN_SELECT_OUT)) == 0 &&
			  strncmp(rest, cases[i].out, strlen(cases[i].out)) == 0 &&
			  strstr(rest, "z OK NOOP completed\r\n") != NULL && !closed;
		if (!ok) {
			fprintf(stderr, "malformed case %zu %s: got %s\n", i, cases[i].in, rest);
			pn_test_failures_++;
		}
		free(out);
	}
	/* Too many bad commands in a row: BYE and close. */
	EXPECT_CLOSED("a X\r\nb X\r\nc X\r\nd X\r\ne X\r\nf X\r\ng X\r\nh X\r\ni X\r\nj X\r\nk NOOP\r\n",
		      "a BAD Unknown command X\r\nb BAD Unknown command X\r\nc BAD Unknown command X\r\n"
		      "d BAD Unknown command X\r\ne BAD Unknown command X\r\nf BAD Unknown command X\r\n"
		      "g BAD Unknown command X\r\nh BAD Unknown command X\r\ni BAD Unknown command X\r\n"
		      "j BAD Unknown command X\r\n* BYE Too many invalid commands.\r\n");
	/* A good command resets the count. */
	EXPECT("a X\r\nb X\r\nc X\r\nd X\r\ne X\r\nf X\r\ng X\r\nh X\r\ni X\r\nj NOOP\r\nk X\r\n",
	       "a BAD Unknown command X\r\nb BAD Unknown command X\r\nc BAD Unknown command X\r\n"
	       "d BAD Unknown command X\r\ne BAD Unknown command X\r\nf BAD Unknown command X\r\n"
	       "g BAD Unknown command X\r\nh BAD Unknown command X\r\ni BAD Unknown command X\r\n"
	       "j OK NOOP completed\r\nk BAD Unknown command X\r\n");
}

PN_TEST(test_shutdown_and_disconnect)
{
	struct imap_settings set;
	struct fake f;
	struct imap_action act;

	settings(&set, true);
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_reset(&f.out);
	imap_session_shutdown(f.s);
	fake_pump(&f);
	check_out(&f, "* BYE [UNAVAILABLE] Server shutting down\r\n", __LINE__);
	CHECK(f.closed);
	CHECK_INT(imap_session_next(f.s, &act), -1);
	fake_free(&f);

	/* Autologout and kick: the same close, each with its own words. */
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_reset(&f.out);
	imap_session_end(f.s, IMAP_END_IDLE);
	fake_pump(&f);
	check_out(&f, "* BYE Autologout; idle for too long\r\n", __LINE__);
	CHECK(f.closed);
	fake_free(&f);
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_reset(&f.out);
	imap_session_end(f.s, IMAP_END_KICK);
	imap_session_end(f.s, IMAP_END_SHUTDOWN);	/* the first reason wins */
	fake_pump(&f);
	check_out(&f, "* BYE Disconnected by the administrator.\r\n", __LINE__);
	CHECK(f.closed);
	fake_free(&f);

	/* Drain while AUTHENTICATE waits for the client. */
	fake_init(&f, &set);
	fake_pump(&f);
	pn_buf_reset(&f.out);
	fake_feed(&f, "a AUTHENTICATE PLAIN\r\n", 22);
	imap_session_shutdown(f.s);
	fake_pump(&f);
	check_out(&f, "+ \r\n* BYE [UNAVAILABLE] Server shutting down\r\n", __LINE__);
	CHECK(f.closed);
	fake_free(&f);

	/* Disconnect with a request outstanding: answered, then -1. */
	fake_init(&f, &set);
	fake_pump(&f);
	CHECK_INT(imap_session_feed(f.s, "a LOGIN alice secret\r\n", 22), 22);
	while (imap_session_next(f.s, &act) == 1 && act.type != IMAP_ACTION_REQUEST)
		;
	CHECK_INT(act.type, IMAP_ACTION_REQUEST);
	CHECK_INT(act.req->type, IMAP_REQ_AUTH_VERIFY);
	CHECK_STR(act.req->auth.user, "alice");
	imap_session_disconnected(f.s);
	const char *error;
	CHECK_INT(imap_session_status_result(f.s, &(struct imap_status_result){ 0 }, &error), -1);
	CHECK_INT(imap_session_auth_result(f.s, IMAP_RESULT_OK, &error), 0);
	CHECK_INT(imap_session_next(f.s, &act), -1);
	fake_free(&f);
}

/* Feeds a command and returns the request it makes (not answered yet). */
static const struct imap_request *request_of(struct fake *f, const char *cmd)
{
	struct imap_action act;
	CHECK_INT(imap_session_feed(f->s, cmd, strlen(cmd)), strlen(cmd));
	while (imap_session_next(f->s, &act) == 1) {
		if (act.type == IMAP_ACTION_REQUEST)
			return act.req;
	}
	CHECK(!"no request");
	return NULL;
}

#define GONE_BYE "* BYE Selected mailbox was deleted, have to disconnect.\r\n"

/* Selects a mailbox with an OK answer made here (the fake knows only
 * INBOX). */
static void select_other(struct fake *f, const char *cmd)
{
	static const uint32_t uids[] = { 3, 4 };
	struct imap_select_result sel = {
		.result = IMAP_RESULT_OK, .uids = uids, .count = 2, .uidvalidity = 7,
		.uidnext = 5, .highestmodseq = 9,
	};
	const char *error;
	const struct imap_request *req = request_of(f, cmd);

	CHECK(req != NULL && req->type == IMAP_REQ_MAILBOX_SELECT);
	CHECK_INT(imap_session_select_result(f->s, &sel, &error), 0);
	fake_pump(f);
	pn_buf_reset(&f->out);
}

/* The selected mailbox deleted or renamed away by another session
 * (imap_session_mailbox_gone): BYE at once in IDLE or between commands,
 * after the reply of a running command, never when nothing is selected.
 * The session's own DELETE closes the mailbox, its own RENAME is
 * followed. */
PN_TEST(test_mailbox_gone)
{
	struct fake *f = notify_session();
	const struct imap_request *req;
	bool ro;

	feed_str(f, "c IDLE\r\n");
	check_out(f, "+ idling\r\n", __LINE__);
	imap_session_mailbox_gone(f->s);
	fake_pump(f);
	check_out(f, GONE_BYE, __LINE__);
	CHECK(f->closed);
	fake_free(f);

	f = notify_session();
	imap_session_mailbox_gone(f->s);
	fake_pump(f);
	check_out(f, GONE_BYE, __LINE__);
	CHECK(f->closed);
	fake_free(f);

	/* during a command: its reply first */
	f = notify_session();
	req = request_of(f, "c FETCH 1 UID\r\n");
	CHECK(req != NULL && req->type == IMAP_REQ_MESSAGES);
	imap_session_mailbox_gone(f->s);
	fake_answer(f, req);
	fake_pump(f);
	check_out(f, "* 1 FETCH (UID 1)\r\nc OK FETCH completed\r\n" GONE_BYE, __LINE__);
	CHECK(f->closed);
	fake_free(f);

	/* nothing selected: ignored; a drain keeps its own words */
	f = notify_session();
	feed_str(f, "c UNSELECT\r\n");
	imap_session_mailbox_gone(f->s);
	feed_str(f, "d NOOP\r\n");
	check_out(f, "c OK UNSELECT completed\r\nd OK NOOP completed\r\n", __LINE__);
	CHECK(!f->closed);
	feed_str(f, "e SELECT INBOX\r\n");
	pn_buf_reset(&f->out);
	imap_session_shutdown(f->s);
	imap_session_mailbox_gone(f->s);
	fake_pump(f);
	check_out(f, "* BYE [UNAVAILABLE] Server shutting down\r\n", __LINE__);
	fake_free(f);

	/* own RENAME of a superior, then of the mailbox: followed */
	f = notify_session();
	select_other(f, "c SELECT Work/A\r\n");
	CHECK_STR(imap_session_mailbox(f->s, &ro), "Work/A");
	feed_str(f, "d RENAME Wo Xy\r\ne RENAME Work Jobs\r\n");
	check_out(f, "d OK RENAME completed\r\ne OK RENAME completed\r\n", __LINE__);
	CHECK_STR(imap_session_mailbox(f->s, &ro), "Jobs/A");
	feed_str(f, "f RENAME Jobs/A Jobs/B\r\n");
	check_out(f, "f OK RENAME completed\r\n", __LINE__);
	CHECK_STR(imap_session_mailbox(f->s, &ro), "Jobs/B");
	/* own DELETE of a superior leaves it selected; of itself closes it */
	feed_str(f, "g DELETE Jobs\r\ng2 NOOP\r\nh DELETE Jobs/B\r\ni FETCH 1 UID\r\n");
	check_out(f, "g OK DELETE completed\r\ng2 OK NOOP completed\r\n"
		  "h OK DELETE completed\r\ni BAD FETCH needs a selected mailbox\r\n", __LINE__);
	CHECK(imap_session_mailbox(f->s, &ro) == NULL);
	CHECK_INT(imap_session_state(f->s), IMAP_STATE_AUTHENTICATED);
	CHECK(!f->closed);
	fake_free(f);

	/* RENAME of INBOX leaves INBOX selected where it is */
	f = notify_session();
	feed_str(f, "c RENAME INBOX Old\r\n");
	check_out(f, "c OK RENAME completed\r\n", __LINE__);
	CHECK_STR(imap_session_mailbox(f->s, &ro), "INBOX");
	fake_free(f);
}

/* EXAMINE shows the \Recent count the daemon found (not claimed) and new
 * \Recent messages as a SELECTed session does (RFC 3501 2.3.2, 6.3.2). */
PN_TEST(test_examine_recent)
{
	struct fake *f = notify_session();
	bool ro;

	feed_str(f, "c EXAMINE INBOX\r\n");
	check_out(f, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
		  "* 3 EXISTS\r\n* 1 RECENT\r\n* OK [UNSEEN 2] First unseen.\r\n"
		  "* OK [PERMANENTFLAGS ()] Flags permitted.\r\n"
		  "* OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 6] Predicted next UID\r\n"
		  "* OK [HIGHESTMODSEQ 100] Highest\r\n"
		  "c OK [READ-ONLY] EXAMINE completed\r\n", __LINE__);
	CHECK_STR(imap_session_mailbox(f->s, &ro), "INBOX");
	CHECK(ro);
	struct imap_notify nr = { .type = IMAP_NOTIFY_EXISTS, .uid = 6, .recent = true };
	CHECK_INT(imap_session_notify(f->s, &nr), 0);
	feed_str(f, "d NOOP\r\n");
	check_out(f, "* 4 EXISTS\r\n* 2 RECENT\r\nd OK NOOP completed\r\n", __LINE__);
	fake_free(f);
}

PN_TEST(test_request_fields)
{
	struct imap_settings set;
	struct fake f;
	const struct imap_request *r;

	settings(&set, true);
	fake_init(&f, &set);
	r = request_of(&f, "a AUTHENTICATE PLAIN Ym9zcwBhbGljZQBzZWNyZXQ=\r\n");
	CHECK_INT(r->type, IMAP_REQ_AUTH_VERIFY);
	CHECK_INT(r->auth.mech, IMAP_AUTH_PLAIN);
	CHECK_STR(r->auth.authzid, "boss");
	CHECK_STR(r->auth.user, "alice");
	CHECK_STR(r->auth.password, "secret");
	fake_answer(&f, r);
	r = request_of(&f, "b EXAMINE inbox\r\n");
	CHECK_INT(r->type, IMAP_REQ_MAILBOX_SELECT);
	CHECK_STR(r->mailbox, "INBOX");
	CHECK(r->readonly);
	fake_answer(&f, r);
	r = request_of(&f, "c STATUS Inbox/Sub (UNSEEN RECENT)\r\n");
	CHECK_INT(r->type, IMAP_REQ_MAILBOX_STATUS);
	CHECK_STR(r->mailbox, "INBOX/Sub");
	CHECK_INT(r->status_items, IMAP_STATUS_UNSEEN | IMAP_STATUS_RECENT);
	fake_answer(&f, r);
	r = request_of(&f, "d APPEND Sent (\\seen $X) \" 5-Feb-2024 01:02:03 -0130\" {3+}\r\nabc\r\n");
	CHECK_INT(r->type, IMAP_REQ_APPEND);
	CHECK_STR(r->mailbox, "Sent");
	CHECK_INT(r->flag_count, 2);
	CHECK_STR(r->flags[0], "\\Seen");
	CHECK_STR(r->flags[1], "$X");
	CHECK(r->has_date);
	CHECK_INT(r->date, 1707091200 + 2 * 3600 + 32 * 60 + 3); /* 02:32:03 UTC */
	CHECK_INT(r->date_tz, -90);
	CHECK_MEM(r->data, r->data_len, "abc", 3);
	fake_answer(&f, r);
	r = request_of(&f, "e RENAME \"Caf&AOk-\" Work/Old\r\n");
	CHECK_INT(r->type, IMAP_REQ_MAILBOX_RENAME);
	CHECK_STR(r->mailbox, "Caf&AOk-");
	CHECK_STR(r->new_name, "Work/Old");
	fake_answer(&f, r);
	bool ro = false;
	CHECK_STR(imap_session_mailbox(f.s, &ro), "INBOX"); /* EXAMINE above */
	CHECK(ro);
	r = request_of(&f, "f SELECT INBOX\r\n");
	CHECK(imap_session_mailbox(f.s, NULL) == NULL); /* deselected first */
	fake_answer(&f, r);
	CHECK_STR(imap_session_mailbox(f.s, &ro), "INBOX");
	CHECK(!ro);
	CHECK_INT(imap_session_message_count(f.s), 3);
	r = request_of(&f, "g UID STORE 1:4 -FLAGS.SILENT (\\Deleted)\r\n");
	CHECK_INT(r->type, IMAP_REQ_STORE);
	CHECK_INT(r->store_op, IMAP_STORE_REMOVE);
	CHECK(r->silent);
	CHECK_INT(r->uid_count, 2);
	CHECK_INT(r->uids[0], 1);
	CHECK_INT(r->uids[1], 2);
	fake_answer(&f, r);
	r = request_of(&f, "h MOVE 2:* Trash\r\n");
	CHECK_INT(r->type, IMAP_REQ_COPY);
	CHECK(r->move);
	CHECK_INT(r->uid_count, 2);
	CHECK_INT(r->uids[1], 5);
	fake_answer(&f, r);
	r = request_of(&f, "i FETCH 1 (BODY.PEEK[] ENVELOPE)\r\n");
	CHECK_INT(r->type, IMAP_REQ_MESSAGES);
	CHECK_INT(r->need, IMAP_NEED_MESSAGE | IMAP_NEED_ENVELOPE);
	fake_answer(&f, r);
	r = request_of(&f, "j SEARCH FLAGGED LARGER 3\r\n");
	CHECK_INT(r->need, IMAP_NEED_FLAGS | IMAP_NEED_SIZE);
	CHECK_INT(r->uid_count, 1); /* uid 2 was moved away */
	fake_answer(&f, r);
	/* "2:*" with 1 the highest UID is "1:2" (RFC 3501 9). */
	r = request_of(&f, "k UID SEARCH UID 2:* SUBJECT x\r\n");
	CHECK_INT(r->need, IMAP_NEED_MESSAGE);
	CHECK_INT(r->uid_count, 1);
	fake_answer(&f, r);
	/* Nothing can match: no request at all. */
	int before = f.requests;
	fake_pump(&f);
	pn_buf_reset(&f.out);
	feed_str(&f, "l UID SEARCH UID 3:4 SUBJECT x\r\n");
	CHECK_INT(f.requests, before);
	check_out(&f, "* SEARCH\r\nl OK UID SEARCH completed\r\n", __LINE__);
	fake_free(&f);
}

PN_TEST(test_list_match)
{
	CHECK(list_match("*", "a/b/c"));
	CHECK(list_match("%", "abc"));
	CHECK(!list_match("%", "a/b"));
	CHECK(list_match("a/%", "a/b"));
	CHECK(!list_match("a/%", "a/b/c"));
	CHECK(list_match("a*c", "a/b/c"));
	CHECK(list_match("inbox", "INBOX"));
	CHECK(list_match("InBox/%", "INBOX/x"));
	CHECK(!list_match("inbox/X", "INBOX/x"));
	CHECK(!list_match("sent", "Sent"));
	CHECK(list_match("%/%", "a/b"));
	CHECK(!list_match("", "a"));
}

PN_TEST_MAIN("test-imap-session",
	     PN_TEST_CASE(test_greeting),
	     PN_TEST_CASE(test_logindisabled),
	     PN_TEST_CASE(test_starttls_injection),
	     PN_TEST_CASE(test_auth),
	     PN_TEST_CASE(test_states),
	     PN_TEST_CASE(test_fetch),
	     PN_TEST_CASE(test_binary),
	     PN_TEST_CASE(test_condstore),
	     PN_TEST_CASE(test_mailboxes),
	     PN_TEST_CASE(test_append),
	     PN_TEST_CASE(test_search),
	     PN_TEST_CASE(test_store_copy_expunge),
	     PN_TEST_CASE(test_idle),
	     PN_TEST_CASE(test_notify_between_commands),
	     PN_TEST_CASE(test_expunge_order),
	     PN_TEST_CASE(test_pipelining),
	     PN_TEST_CASE(test_byte_at_a_time),
	     PN_TEST_CASE(test_literal_refusal),
	     PN_TEST_CASE(test_malformed),
	     PN_TEST_CASE(test_shutdown_and_disconnect),
	     PN_TEST_CASE(test_mailbox_gone),
	     PN_TEST_CASE(test_examine_recent),
	     PN_TEST_CASE(test_request_fields),
	     PN_TEST_CASE(test_list_match))
