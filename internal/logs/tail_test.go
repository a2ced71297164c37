package logs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTailBigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	const total = 200000 // ~6 MB: many tail blocks
	for i := range total {
		fmt.Fprintf(bw, "line %d %s\n", i, strings.Repeat("x", i%40))
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, n := range []int{1, 15, 5000} {
		got, err := Tail(path, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("Tail(%d) returned %d lines", n, len(got))
		}
		for j, l := range got {
			i := total - n + j
			if want := fmt.Sprintf("line %d %s", i, strings.Repeat("x", i%40)); l != want {
				t.Fatalf("Tail(%d)[%d] = %q, want %q", n, j, l, want)
			}
		}
	}
}

func TestTailEdges(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("y", tailBlock*2+17) // a line spanning several blocks
	for _, tc := range []struct {
		name, content string
		n             int
		want          []string
	}{
		{"empty", "", 5, nil},
		{"fewer lines than asked", "a\nb\n", 5, []string{"a", "b"}},
		{"no trailing newline", "a\nb\nc", 2, []string{"b", "c"}},
		{"blank lines", "a\n\n\n", 2, []string{"", ""}},
		{"only a newline", "\n", 3, []string{""}},
		{"zero", "a\n", 0, nil},
		{"long line", "first\n" + long + "\nlast\n", 2, []string{long, "last"}},
		{"long line whole file", "first\n" + long + "\nlast\n", 9, []string{"first", long, "last"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Tail(path, tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Tail(%d) = %q, want %q", tc.n, got, tc.want)
			}
		})
	}
	if _, err := Tail(filepath.Join(dir, "missing"), 3); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Tail of a missing file: %v", err)
	}
}

func BenchmarkTail(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.log")
	data := strings.Repeat(strings.Repeat("z", 99)+"\n", 200000) // 20 MB
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Tail(path, 100); err != nil {
			b.Fatal(err)
		}
	}
}
