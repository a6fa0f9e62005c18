-- Slack replay cache: one row per verified Slack request that has a side effect (a command that
-- decides, pauses or resumes, a button click), keyed by its signature. The signature is an HMAC of
-- the timestamp and the body, so the same key means the same request sent again; the row is kept
-- while the timestamp is inside the 5-minute window (and a margin for replicas' clock skew), after
-- which the request would be refused as stale anyway. Shared by every replica.

CREATE TABLE slack_requests (
    signature   text        PRIMARY KEY,   -- X-Slack-Signature
    endpoint    text        NOT NULL,      -- commands | interactions
    received_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX slack_requests_expires ON slack_requests (expires_at);

---- create above / drop below ----

DROP TABLE slack_requests;
