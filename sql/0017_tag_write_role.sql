-- Write-back by role: a writable tag names the lowest role that may write it (operator-writable setpoints,
-- engineer-only settings). Existing tags default to engineer, the safer side.
ALTER TABLE tags ADD COLUMN IF NOT EXISTS write_role text NOT NULL DEFAULT 'engineer'
    CHECK (write_role IN ('operator', 'engineer', 'admin'));
COMMENT ON COLUMN tags.write_role IS 'lowest API role allowed to write this tag when writable (operator < engineer < admin)';
