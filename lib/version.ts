/** The unibus release, reported by `unibus --version` and `/healthz`. */
export const VERSION = "0.2.0";
