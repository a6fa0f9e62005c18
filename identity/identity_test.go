package identity

import (
	"context"
	"testing"
)

func TestRoles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		role      Role
		read, act bool
	}{
		{"", RoleNone, false, false},
		{"read", RoleRead, true, false},
		{"admin", RoleAdmin, true, true},
	} {
		if tc.role.String() != tc.name {
			t.Errorf("%d.String() = %q, want %q", tc.role, tc.role.String(), tc.name)
		}
		if r, ok := ParseRole(tc.name); ok != (tc.name != "") || r != tc.role {
			t.Errorf("ParseRole(%q) = %v, %v", tc.name, r, ok)
		}
		p := Principal{Name: "x", Role: tc.role}
		if p.Can(RoleRead) != tc.read || p.Can(RoleAdmin) != tc.act || p.Can(RoleNone) {
			t.Errorf("%v: Can(read) %v, Can(admin) %v", tc.role, p.Can(RoleRead), p.Can(RoleAdmin))
		}
	}
	if _, ok := ParseRole("Admin"); ok {
		t.Error(`ParseRole("Admin") accepted: role names are lower-case`)
	}
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("a principal in an empty context")
	}
	want := Principal{Name: "alice", Role: RoleAdmin, Via: ViaWeb}
	if got, ok := FromContext(NewContext(context.Background(), want)); !ok || got != want {
		t.Fatalf("FromContext = %+v, %v; want %+v", got, ok, want)
	}
}
