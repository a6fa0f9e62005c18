// Package config reads responder's configuration file (DESIGN.md §4).
//
// Contract:
//   - Strict: the file is one YAML document decoded with unknown keys as errors (a typo such as
//     bearer_tokn is refused, never ignored), in every section: each one is typed and validated
//     here (probes in probes.go, slack in slack.go, handlers.kubernetes in kubernetes.go,
//     handlers.postgres in postgres.go, secrets in secrets.go, limits in limits.go, web,
//     api.tokens and approvals.approvers.web in web.go, the rest in types.go and validate.go).
//     Nothing is passed on as raw YAML.
//   - Every error names the file and, when the key is written, the line:
//     `responder.yml:12: unknown key "bearer_tokn" in webhook`. Load and Parse report all
//     problems at once (errors.Join), one per line.
//   - Keys left out take the defaults of Default(); the keys of list items and map entries (a
//     probe's interval, a postgres cluster's rto) are filled before validation. Every default is
//     in defaults.go. Keys written with an invalid value (a zero max_concurrent_actions, a
//     duplicate_window under 10m) are errors, not silently defaulted.
//   - Durations take Prometheus or Go syntax ("90s", "15m", "90d", "2w", "1h30m"); sizes take
//     bytes or B, KB, MB, GB (×1000) and KiB, MiB, GiB (×1024).
//   - Secrets never print: Secret renders as "<secret>" through fmt (every verb), YAML, JSON,
//     text and slog; only Value (and the Config helpers WebhookTokens, APIToken, APIReadToken,
//     APITokens, DatabaseURL) return it. Console users' bcrypt hashes are Secrets too. Error messages never quote a secret.
//   - Every secret has a *_file variant, read relative to the config file's directory and
//     trimmed of surrounding whitespace; setting both the value and the file is an error.
//     webhook.bearer_token_file holds one token per line, at most two (rotation).
//   - RESPONDER_DATABASE_URL, when set, overrides database.url and database.url_file (which is
//     then not read). Tests inject the lookup with WithGetenv.
//   - Relative paths (rule_files, *_file) resolve against Config.Dir, the absolute directory of
//     the file; RuleFilePaths expands the rule_files globs.
package config
