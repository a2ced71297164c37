package logs

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// tailBlock is how much Tail reads at a time, going backwards from the end of the file.
const tailBlock = 64 << 10

// Tail returns the last n lines of the file at path, oldest first and without their newlines.
// It reads the file backwards in blocks, so its cost depends on n and the line lengths, not on
// the file's size. A final line without a newline counts as a line; n <= 0 returns nothing.
func Tail(path string, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("tail: %w", err)
	}
	end := st.Size()
	if end == 0 {
		return nil, nil
	}

	var blocks [][]byte // read blocks, last block first
	newlines := 0
	pos := end
	trailing := false // whether the file ends with a newline
	for pos > 0 {
		size := int64(tailBlock)
		if pos < size {
			size = pos
		}
		pos -= size
		buf := make([]byte, size)
		if _, err := f.ReadAt(buf, pos); err != nil && err != io.EOF {
			return nil, fmt.Errorf("tail %s: %w", path, err)
		}
		if len(blocks) == 0 && buf[len(buf)-1] == '\n' {
			trailing = true
		}
		blocks = append(blocks, buf)
		newlines += bytes.Count(buf, []byte{'\n'})
		// n lines need n separating newlines before them (n+1 with a trailing one).
		need := n
		if trailing {
			need++
		}
		if newlines >= need {
			break
		}
	}

	var total int
	for _, b := range blocks {
		total += len(b)
	}
	data := make([]byte, 0, total)
	for i := len(blocks) - 1; i >= 0; i-- {
		data = append(data, blocks[i]...)
	}
	if trailing {
		data = data[:len(data)-1]
	}
	lines := bytes.Split(data, []byte{'\n'})
	if pos > 0 {
		lines = lines[1:] // the first piece may be the tail of a longer line
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = string(l)
	}
	return out, nil
}
