-- Dead letters are idempotent like samples: the same refused row received again (a replayed spool
-- batch, a commit whose acknowledgement was lost, a QoS 1 redelivery) is stored once.
-- The natural key is the source and the refused payload (tag id + timestamp + value + quality for a
-- sample; topic + raw bytes for a message); the first reason given is kept. The reason is not part
-- of the key because some reasons carry the time they were judged ("... is 42 s in the future").
ALTER TABLE dead_letters
    ADD COLUMN letter_key text GENERATED ALWAYS AS (md5(source || E'\x1f' || payload::text)) STORED;
-- rows stored twice before this migration: keep the first of each
DELETE FROM dead_letters d USING dead_letters e
 WHERE d.letter_key = e.letter_key AND d.id > e.id;
CREATE UNIQUE INDEX dead_letters_key ON dead_letters (letter_key);
COMMENT ON COLUMN dead_letters.letter_key IS
    'md5 of source and payload: a replayed refused row is inserted with ON CONFLICT DO NOTHING';
