package config

import (
	"strings"
	"testing"
)

// bus.replicas defaults to 3 on an external cluster and to 1 on the embedded server, which cannot
// hold more.
func TestBusReplicasDefault(t *testing.T) {
	const signingKey = "testdata/secrets/bus-signing-key" // an external bus needs one
	for _, tc := range []struct {
		name, yaml string
		want       int
		err        string
	}{
		{"embedded", "", 1, ""},
		{"external", "nats: {url: 'nats://n1:4222,nats://n2:4222'}\nbus: {signing_key_file: " + signingKey + "}\n", 3, ""},
		{"external, explicit 1", "nats: {url: 'nats://n1:4222'}\nbus: {replicas: 1, signing_key_file: " + signingKey + "}\n", 1, ""},
		{"external, explicit 5", "nats: {url: 'nats://n1:4222'}\nbus: {replicas: 5, signing_key_file: " + signingKey + "}\n", 5, ""},
		{"embedded, 3", "\nbus:\n  replicas: 3\n", 0, "r.yml:3: bus.replicas: 3 replicas need an external JetStream cluster (nats.url); the embedded server keeps 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml+"database: {url: 'postgres://db/responder'}\n"), "r.yml", noEnv)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Bus.Replicas != tc.want {
				t.Errorf("bus.replicas = %d, want %d", cfg.Bus.Replicas, tc.want)
			}
		})
	}
}

// database.url may be a libpq multi-host DSN that connects only to the server taking writes, so
// that a failover of the store needs no change of responder's config.
func TestDatabaseMultiHostDSN(t *testing.T) {
	for _, dsn := range []string{
		"postgres://responder@pg-1:5432,pg-2:5432,pg-3:5432/responder?target_session_attrs=read-write&connect_timeout=2",
		"host=pg-1,pg-2 port=5432,5432 dbname=responder user=responder target_session_attrs=read-write",
	} {
		cfg, err := Parse([]byte("database: {url: '"+dsn+"'}\n"), "r.yml", noEnv)
		if err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if cfg.DatabaseURL() != dsn {
			t.Errorf("DatabaseURL() = %q, want %q", cfg.DatabaseURL(), dsn)
		}
	}
}
