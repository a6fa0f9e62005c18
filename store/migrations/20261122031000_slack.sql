-- Slack: the incident message of each incident (channel and ts to update it in place, the hash of
-- what it shows, whether its resolution notice went out), and the pages page.slack posted, keyed
-- by the action's idempotency key so a retried action never posts twice.

CREATE TABLE slack_messages (
    incident_id     bigint      PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
    channel         text        NOT NULL,   -- channel ID as chat.postMessage answered (chat.update needs it)
    ts              text        NOT NULL,
    hash            text        NOT NULL,   -- of the rendered blocks last sent
    renders         int         NOT NULL DEFAULT 1,
    resolved_notice boolean     NOT NULL DEFAULT false,
    final           boolean     NOT NULL DEFAULT false,   -- resolved, every action finished, notice sent
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX slack_messages_open ON slack_messages (incident_id) WHERE NOT final;

CREATE TABLE slack_pages (
    key         text        PRIMARY KEY,
    incident_id bigint      REFERENCES incidents (id) ON DELETE CASCADE,
    channel     text        NOT NULL,
    ts          text        NOT NULL,
    at          timestamptz NOT NULL
);

---- create above / drop below ----

DROP TABLE slack_pages;
DROP TABLE slack_messages;
