//! Placeholder so the `webhook` branch compiles; the lead's IAMRoleBinding CRD replaces this
//! file on merge.
