//! Static AWS key detection rules: a pure function from a workload (and a view of the
//! Secrets and ConfigMaps it references) to findings. Shared by the webhook and `check`.
