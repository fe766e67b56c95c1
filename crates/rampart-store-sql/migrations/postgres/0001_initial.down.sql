DROP TABLE sessions;
DROP TRIGGER audit_events_append_only ON audit_events;
DROP FUNCTION rampart_audit_append_only();
DROP TABLE audit_anchors;
DROP TABLE audit_events;
DROP TABLE setup_state;
DROP TABLE users;
