package identity

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"ci-deploy", true},
		{"alice@example.com", true},
		{"a.b_c-d", true},
		{"U012AB3CD", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{"api:alice", false},
		{"al ice", false},
		{"alice\n", false},
		{"<script>", false},
		{"élodie", false},
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
	for _, n := range []string{LegacyAdminName, LegacyReadName} {
		if !ValidName(n) || !Reserved(n) {
			t.Errorf("%q: valid %v, reserved %v", n, ValidName(n), Reserved(n))
		}
	}
	if Reserved("ci") {
		t.Error(`Reserved("ci")`)
	}
}

func TestTokens(t *testing.T) {
	toks, err := NewTokens([]Token{
		{Name: LegacyAdminName, Secret: "legacy-admin", Role: RoleAdmin},
		{Name: LegacyReadName, Secret: "legacy-read", Role: RoleRead},
		{Name: "ci", Secret: "ci-secret", Role: RoleRead},
		{Name: "ops", Secret: "ops-secret", Role: RoleAdmin},
		{Name: "ops2", Secret: "ops-secret-but-longer", Role: RoleAdmin},
	})
	if err != nil {
		t.Fatal(err)
	}
	if toks.Len() != 5 || !toks.CanAct() {
		t.Fatalf("Len %d, CanAct %v", toks.Len(), toks.CanAct())
	}
	for _, tc := range []struct {
		header string
		want   Principal
		ok     bool
	}{
		{"Bearer legacy-admin", Principal{Name: "api", Role: RoleAdmin, Via: ViaAPI}, true},
		{"Bearer legacy-read", Principal{Name: "api-read", Role: RoleRead, Via: ViaAPI}, true},
		{"Bearer ci-secret", Principal{Name: "ci", Role: RoleRead, Via: ViaAPI}, true},
		{"Bearer ops-secret", Principal{Name: "ops", Role: RoleAdmin, Via: ViaAPI}, true},
		{"Bearer ops-secret-but-longer", Principal{Name: "ops2", Role: RoleAdmin, Via: ViaAPI}, true},
		{"", Principal{}, false},
		{"Bearer ", Principal{}, false},
		{"Bearer", Principal{}, false},
		{"Bearer ops-secre", Principal{}, false},
		{"Bearer ops-secret ", Principal{}, false},
		{"Basic b3BzOm9wcy1zZWNyZXQ=", Principal{}, false},
		{"ops-secret", Principal{}, false},
		{"Bearer  ops-secret", Principal{}, false},
	} {
		r := httptest.NewRequest("GET", "/api/v1/actions", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		got, ok := toks.Authenticate(r)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
	readOnly, err := NewTokens([]Token{{Name: "ci", Secret: "x", Role: RoleRead}})
	if err != nil || readOnly.CanAct() {
		t.Fatalf("read-only tokens: CanAct %v, %v", readOnly.CanAct(), err)
	}
	none, err := NewTokens(nil)
	if err != nil || none.Len() != 0 || none.CanAct() {
		t.Fatalf("no tokens: %v", err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer anything")
	if _, ok := none.Authenticate(r); ok {
		t.Fatal("no tokens authenticated a request")
	}
}

func TestNewTokensErrors(t *testing.T) {
	for _, tc := range []struct {
		toks []Token
		want string
	}{
		{[]Token{{Name: "", Secret: "s", Role: RoleRead}}, `name ""`},
		{[]Token{{Name: "a b", Secret: "s", Role: RoleRead}}, `name "a b"`},
		{[]Token{{Name: "ci", Secret: "", Role: RoleRead}}, "empty token"},
		{[]Token{{Name: "ci", Secret: "s"}}, "no role"},
		{[]Token{{Name: "ci", Secret: "s", Role: RoleRead}, {Name: "ci", Secret: "t", Role: RoleRead}}, "name used twice"},
		{[]Token{{Name: "ci", Secret: "SECRET-x", Role: RoleRead}, {Name: "ops", Secret: "SECRET-x", Role: RoleAdmin}}, `"ci" and "ops" are the same token`},
	} {
		_, err := NewTokens(tc.toks)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.toks, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET-") {
			t.Errorf("error quotes a token: %v", err)
		}
	}
}
