package owner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// otherUID is a uid that is not the test's: nobody's. Chowning to it needs root.
const otherUID = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("chowns files to another user: needs root")
	}
}

// A link of the user's own is followed to an existing file, never to create one.
func TestOpenFileOwnLink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("a"), 0o600)
	os.Symlink(target, filepath.Join(dir, "exists"))
	os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling"))

	f, err := OpenFile(filepath.Join(dir, "exists"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("own link to an existing file: %v", err)
	}
	f.WriteString("b")
	f.Close()
	if b, _ := os.ReadFile(target); string(b) != "ab" {
		t.Errorf("target holds %q", b)
	}
	if _, err := OpenFile(filepath.Join(dir, "dangling"), os.O_WRONLY|os.O_CREATE, 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("own dangling link: %v, want not exist", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Error("a file was created through a link")
	}
	if err := WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenOwn(filepath.Join(dir, "exists"), os.O_RDONLY, 0); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("OpenOwn through a link: %v", err)
	}
}

// A link another user planted is not followed, not even to an existing file; a file or directory
// of theirs is refused where the user's own is required.
func TestAnotherUsersFiles(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "planted")
	os.Symlink(target, link)
	os.Lchown(link, otherUID, otherUID)
	var oe *Error
	if _, err := OpenFile(link, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); !errors.As(err, &oe) || !oe.Link || oe.UID != otherUID {
		t.Errorf("planted link: %v", err)
	}
	if err := WriteFile(link, []byte("x"), 0o600); !errors.As(err, &oe) {
		t.Errorf("WriteFile through a planted link: %v", err)
	}
	if b, _ := os.ReadFile(target); len(b) != 0 {
		t.Errorf("written through a planted link: %q", b)
	}

	theirs := filepath.Join(dir, "theirs")
	os.WriteFile(theirs, nil, 0o600)
	os.Chown(theirs, otherUID, otherUID)
	if err := CheckFile(theirs); !errors.As(err, &oe) || oe.Link || oe.UID != otherUID {
		t.Errorf("CheckFile of another user's file: %v", err)
	}
	if _, err := OpenOwn(theirs, os.O_RDWR|os.O_CREATE, 0o600); !errors.As(err, &oe) {
		t.Errorf("OpenOwn of another user's file: %v", err)
	}
	d := filepath.Join(dir, "d")
	os.Mkdir(d, 0o700)
	os.Chown(d, otherUID, otherUID)
	if err := EnsureDir(d); !errors.As(err, &oe) || !strings.Contains(err.Error(), "belongs to uid 65534") && !strings.Contains(err.Error(), "(uid 65534)") {
		t.Errorf("EnsureDir of another user's directory: %v", err)
	}
	dl := filepath.Join(dir, "dl")
	os.Symlink(d, dl)
	if _, err := CheckDir(dl); !errors.As(err, &oe) || oe.Link {
		t.Errorf("own link to another user's directory: %v", err)
	}
	os.Lchown(dl, otherUID, otherUID)
	if _, err := CheckDir(dl); !errors.As(err, &oe) || !oe.Link {
		t.Errorf("another user's link: %v", err)
	}
	mine := filepath.Join(dir, "mine")
	if err := EnsureDir(mine); err != nil {
		t.Errorf("EnsureDir of a new directory: %v", err)
	}
}
