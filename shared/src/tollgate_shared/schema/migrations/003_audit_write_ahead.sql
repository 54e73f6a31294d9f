-- A call that changes something is recorded twice: its intent, committed before it acts
-- (status NULL), and its outcome after the answer (the status), both under one `request`.
-- An intent with no outcome is a call cut short by a crash: it may have acted.
-- A read, or a call refused before it could act, has its outcome row only.
ALTER TABLE audit_log ALTER COLUMN status DROP NOT NULL;
ALTER TABLE audit_log ADD COLUMN request uuid;
