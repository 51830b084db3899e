"""The limits on what a memory may hold, in one place: the store enforces them
(``store_worker.records``), the gateway states them in its tool schemas so the assistant reads
them before calling, and the transcript importer cuts turns to fit them."""

from __future__ import annotations

MAX_CONTENT_BYTES = 100_000  # a memory's content, as UTF-8
MAX_METADATA_BYTES = 16 * 1024  # its metadata, as JSON text
MAX_TAGS = 32
MAX_TAG_LEN = 64  # characters
MAX_KIND_LEN = 32
MAX_ID_LEN = 64
MAX_PROJECT_LEN = 200
MAX_SESSION_ID_LEN = 200
MAX_DESCRIPTION_LEN = 2000  # of a project dependency

# searches (the gateway's tool schemas; the store accepts a little more)
MAX_QUERY_CHARS = 2000
MAX_RESULTS = 100  # per page
MAX_OFFSET = 10_000
MAX_TIME_EXPRESSION_LEN = 200
MAX_FILE_PATH_LEN = 1024
MAX_ERROR_TYPE_LEN = 200

# What the gateway puts where its input held invalid UTF-8 or a lone surrogate: a noncharacter no
# legitimate text needs. The hub client refuses any request carrying it (a readable bad_request);
# the transcript importer turns it into U+FFFD.
INVALID_TEXT_MARK = "\uffff"

# permissions (the gateway's tool schema and the store's checks)
MAX_OPERATION_LEN = 64  # an operation's name ("delete_memories")
MAX_PERMISSION_DETAIL_LEN = 500  # what a logged decision says the operation was about to do
MAX_TRUST_MINUTES = 24 * 60  # the longest grant
MAX_DECISIONS_SHOWN = 200  # recent decisions in one `permissions status`
KEPT_DECISIONS = 10_000  # the decision log keeps this many, dropping the oldest
