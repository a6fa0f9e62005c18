-- Fencing tokens seen by the consumer, per singleton source (the probes): the highest leader lease
-- token accepted so far. An alert produced under a lower token comes from a deposed leader.

CREATE TABLE fences (
    name  text   PRIMARY KEY,
    token bigint NOT NULL
);

---- create above / drop below ----

DROP TABLE fences;
