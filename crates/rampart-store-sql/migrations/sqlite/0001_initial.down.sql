DROP TABLE sessions;
DROP TRIGGER audit_events_no_update;
DROP TABLE audit_anchors;
DROP TABLE audit_events;
DROP TABLE setup_state;
DROP TABLE users;
