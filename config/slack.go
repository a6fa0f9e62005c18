package config

// SlackConfig configures the Slack integration (the Slack issue).
type SlackConfig struct {
	BotTokenFile      string `yaml:"bot_token_file"`
	SigningSecretFile string `yaml:"signing_secret_file"`
	AppTokenFile      string `yaml:"app_token_file"`
	SocketMode        bool   `yaml:"socket_mode"`
	Channel           string `yaml:"channel"`
	APIURL            string `yaml:"api_url"`
	Approvers         struct {
		Users  []string `yaml:"users"`
		Groups []string `yaml:"groups"`
	} `yaml:"approvers"`
}

// validateSlack checks the slack section.
func (c *Config) validateSlack(_ *checker) {}

// resolveSlackSecrets reads the slack *_file secrets.
func resolveSlackSecrets(_ *Config, _ *checker, _ options) {}
