-- Human controls: approvals (who decided, when, through what) and the kill switch.

ALTER TABLE actions ADD COLUMN approvals_required int NOT NULL DEFAULT 1;

CREATE TABLE approvals (
    action_id bigint      NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
    approver  text        NOT NULL,
    decision  text        NOT NULL CHECK (decision IN ('approve', 'deny')),
    via       text        NOT NULL,
    at        timestamptz NOT NULL,
    version   text        NOT NULL,
    PRIMARY KEY (action_id, approver)
);

-- The kill switch: one row, read FOR SHARE in the transaction that claims actions, so a pause
-- that committed is seen by every later claim and waits for the claims in flight.
CREATE TABLE pause (
    id       int         PRIMARY KEY CHECK (id = 1),
    paused   boolean     NOT NULL,
    by       text        NOT NULL,
    reason   text        NOT NULL DEFAULT '',
    at       timestamptz NOT NULL,
    until    timestamptz,
    version  text        NOT NULL
);
INSERT INTO pause (id, paused, by, at, version) VALUES (1, false, 'migration', now(), '');

---- create above / drop below ----

DROP TABLE pause;
DROP TABLE approvals;
ALTER TABLE actions DROP COLUMN approvals_required;
