package secretenv

import "testing"

func TestMask(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{"API_KEY", "abc", Masked},
		{"db_password", "pw", Masked},
		{"GITHUB_TOKEN", "t", Masked},
		{"AWS_SECRET_ACCESS_KEY", "s", Masked},
		{"OAUTH_CREDENTIALS", "c", Masked},
		{"API_KEY", "", ""},
		{"PORT", "3000", "3000"},
		{"NODE_ENV", "production", "production"},
	} {
		if got := Mask(tc.key, tc.value); got != tc.want {
			t.Errorf("Mask(%q, %q) = %q, want %q", tc.key, tc.value, got, tc.want)
		}
	}
}
