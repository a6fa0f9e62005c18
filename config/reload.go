package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"unicode"
)

// reloadable are the keys a configuration reload (SIGHUP, POST /-/reload) applies while
// responder runs, each with every key below it. Every other key needs a restart: what it
// configures is opened once (the bus, the database pool, the webhook receiver's body and alert
// limits, Slack's connection, the execution slots, the leases). A key added to the config needs a
// restart until it is listed here and the app applies it on reload.
var reloadable = []string{
	"rule_files",
	"probes",
	"secrets",
	"handlers",
	"api",
	"web",
	"approvals",
	"webhook.bearer_token",
	"webhook.bearer_token_file",
	"slack.channel",
	"slack.page_group",
	"slack.approvers",
	"slack.group_cache_ttl",
	"slack.signing_secret_file",
	"slack.signing_secret",
	"safety.paused",
	"safety.dry_run",
	"safety.max_alert_age",
	"safety.retention",
	"safety.action_timeout",
	"safety.budgets",
	"safety.breaker",
	"safety.storm_guard",
	"drills",
}

// ReloadableKeys returns the keys a reload applies while responder runs, each with every key
// below it (`handlers` covers `handlers.http.allowed_hosts`); every other key needs a restart.
func ReloadableKeys() []string { return slices.Clone(reloadable) }

// Reloadable reports whether a reload applies key (a path as Changes returns it) while
// responder runs.
func Reloadable(key string) bool {
	for _, r := range reloadable {
		if key == r || strings.HasPrefix(key, r+".") || strings.HasPrefix(key, r+"[") {
			return true
		}
	}
	return false
}

// Changes returns the keys whose values differ between c and next, sorted: YAML paths such as
// `bus.max_bytes`, `web.users.alice.role`, `probes[1].http.url` (a list that changed length is
// named whole: `probes`), and an entry of a map that was added or removed by its own path
// (`secrets.pager`). A secret read from a *_file is compared by value and named after the key
// without _file (`slack.bot_token`, `api.tokens[0].token`), so a rotated file shows. Values are
// never part of the answer.
func (c *Config) Changes(next *Config) []string {
	var out []string
	diffValue("", reflect.ValueOf(c).Elem(), reflect.ValueOf(next).Elem(), &out)
	slices.Sort(out)
	return slices.Compact(out)
}

// NeedsRestart returns the keys of changed that a reload cannot apply, each as
// "KEY: changed; needs a restart".
func NeedsRestart(changed []string) []string {
	var out []string
	for _, k := range changed {
		if !Reloadable(k) {
			out = append(out, k+": changed; needs a restart")
		}
	}
	return out
}

// configType is Config, whose Dir and File are where the file is, not what it says.
var configType = reflect.TypeFor[Config]()

func diffValue(path string, a, b reflect.Value, out *[]string) {
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			f := a.Type().Field(i)
			name := fieldKey(a.Type(), f)
			if name == "" {
				continue
			}
			diffValue(joinKey(path, name), a.Field(i), b.Field(i), out)
		}
	case reflect.Map:
		diffMap(path, a, b, out)
	case reflect.Slice:
		if a.Type().Elem().Kind() == reflect.Uint8 || a.Len() != b.Len() {
			if !reflect.DeepEqual(a.Interface(), b.Interface()) {
				*out = append(*out, path)
			}
			return
		}
		for i := range a.Len() {
			diffValue(fmt.Sprintf("%s[%d]", path, i), a.Index(i), b.Index(i), out)
		}
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			if a.IsNil() != b.IsNil() {
				*out = append(*out, path)
			}
			return
		}
		diffValue(path, a.Elem(), b.Elem(), out)
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
	}
}

// diffMap compares two maps entry by entry; an entry is named by its key (a string, or a number
// as status_map has).
func diffMap(path string, a, b reflect.Value, out *[]string) {
	keys := map[string]reflect.Value{}
	for _, m := range []reflect.Value{a, b} {
		for _, k := range m.MapKeys() {
			keys[fmt.Sprint(k.Interface())] = k
		}
	}
	for _, name := range slices.Sorted(maps.Keys(keys)) {
		k := keys[name]
		av, bv := a.MapIndex(k), b.MapIndex(k)
		if !av.IsValid() || !bv.IsValid() {
			*out = append(*out, joinKey(path, name))
			continue
		}
		diffValue(joinKey(path, name), av, bv, out)
	}
}

// fieldKey is a field's key: its YAML name, or for a value read from a file (yaml:"-") its
// Go name in snake case; "" for what is not configuration (unexported fields, Config's Dir and
// File).
func fieldKey(t reflect.Type, f reflect.StructField) string {
	if !f.IsExported() || t == configType && (f.Name == "Dir" || f.Name == "File") {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name != "" && name != "-" {
		return name
	}
	return snakeCase(f.Name)
}

// snakeCase turns a Go name into a YAML key: BotToken → bot_token, CA → ca.
func snakeCase(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if i > 0 && unicode.IsUpper(r) && unicode.IsLower(rs[i-1]) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func joinKey(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
