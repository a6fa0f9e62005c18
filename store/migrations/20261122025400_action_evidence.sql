-- What an approver sees before deciding: the handler's description of the situation when the
-- action was planned (a failover candidate's last received LSN, for example).

ALTER TABLE actions ADD COLUMN evidence text NOT NULL DEFAULT '';

---- create above / drop below ----

ALTER TABLE actions DROP COLUMN evidence;
