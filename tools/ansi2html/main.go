// Command ansi2html turns a terminal capture with SGR colour sequences (`tmux capture-pane -e
// -p`) into an HTML page that draws it cell for cell in a monospace font, with the xterm
// palette; a headless browser then takes the PNG (see docs/screenshots.sh).
//
//	tmux capture-pane -e -p -t s | go run ./tools/ansi2html -title "corral monit" > shot.html
package main

import (
	"bufio"
	"flag"
	"fmt"
	"html"
	"io"
	"os"
	"strconv"
	"strings"
)

// palette is xterm's 16 colours (the dashboard uses only these).
var palette = [16]string{
	"#1e1e1e", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
	"#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
}

const (
	defaultFG = "#d4d4d4"
	defaultBG = "#1e1e1e"
)

type attrs struct {
	fg, bg                     string
	bold, faint, under, invert bool
}

func color256(n int) string {
	switch {
	case n < 16:
		return palette[n]
	case n < 232:
		n -= 16
		lv := func(v int) int {
			if v == 0 {
				return 0
			}
			return 55 + 40*v
		}
		return fmt.Sprintf("#%02x%02x%02x", lv(n/36), lv(n/6%6), lv(n%6))
	}
	g := 8 + 10*(n-232)
	return fmt.Sprintf("#%02x%02x%02x", g, g, g)
}

// sgr applies the parameters of one ESC[...m sequence.
func (a *attrs) sgr(params string) {
	if params == "" {
		*a = attrs{}
		return
	}
	ps := strings.Split(params, ";")
	for i := 0; i < len(ps); i++ {
		n, _ := strconv.Atoi(ps[i])
		switch {
		case n == 0:
			*a = attrs{}
		case n == 1:
			a.bold = true
		case n == 2:
			a.faint = true
		case n == 4:
			a.under = true
		case n == 7:
			a.invert = true
		case n == 22:
			a.bold, a.faint = false, false
		case n == 24:
			a.under = false
		case n == 27:
			a.invert = false
		case n >= 30 && n <= 37:
			a.fg = palette[n-30]
		case n >= 90 && n <= 97:
			a.fg = palette[n-90+8]
		case n >= 40 && n <= 47:
			a.bg = palette[n-40]
		case n >= 100 && n <= 107:
			a.bg = palette[n-100+8]
		case n == 39:
			a.fg = ""
		case n == 49:
			a.bg = ""
		case n == 38 || n == 48:
			var c string
			if i+2 < len(ps) && ps[i+1] == "5" {
				v, _ := strconv.Atoi(ps[i+2])
				c, i = color256(v), i+2
			} else if i+4 < len(ps) && ps[i+1] == "2" {
				r, _ := strconv.Atoi(ps[i+2])
				g, _ := strconv.Atoi(ps[i+3])
				b, _ := strconv.Atoi(ps[i+4])
				c, i = fmt.Sprintf("#%02x%02x%02x", r, g, b), i+4
			}
			if n == 38 {
				a.fg = c
			} else {
				a.bg = c
			}
		}
	}
}

func (a attrs) style() string {
	fg, bg := a.fg, a.bg
	if fg == "" {
		fg = defaultFG
	}
	if bg == "" {
		bg = defaultBG
	}
	if a.invert {
		fg, bg = bg, fg
	}
	s := "color:" + fg + ";background:" + bg
	if a.bold {
		s += ";font-weight:bold"
	}
	if a.faint {
		s += ";opacity:0.6"
	}
	if a.under {
		s += ";text-decoration:underline"
	}
	return s
}

func convert(r io.Reader, w io.Writer, title string) error {
	var b strings.Builder
	var cur attrs
	open := false
	span := func() {
		if open {
			b.WriteString("</span>")
		}
		b.WriteString(`<span style="` + cur.style() + `">`)
		open = true
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	first := true
	for sc.Scan() {
		if !first {
			if open {
				b.WriteString("</span>")
				open = false
			}
			b.WriteString("\n")
		}
		first = false
		line := sc.Text()
		span()
		for i := 0; i < len(line); {
			if line[i] == 0x1b && i+1 < len(line) && line[i+1] == '[' {
				j := i + 2
				for j < len(line) && (line[j] < 0x40 || line[j] > 0x7e) {
					j++
				}
				if j < len(line) && line[j] == 'm' {
					cur.sgr(line[i+2 : j])
					span()
				}
				i = j + 1
				continue
			}
			j := i
			for j < len(line) && line[j] != 0x1b {
				j++
			}
			b.WriteString(html.EscapeString(line[i:j]))
			i = j
		}
	}
	if open {
		b.WriteString("</span>")
	}
	if err := sc.Err(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, `<!doctype html><meta charset="utf-8"><title>%s</title>
<style>
body { margin: 0; background: #111; }
.win { display: inline-block; margin: 16px; border-radius: 8px; overflow: hidden; box-shadow: 0 6px 24px #000a; }
.bar { background: #333; color: #bbb; font: 12px sans-serif; padding: 6px 10px; }
pre { margin: 0; padding: 8px 10px; background: %s; color: %s;
      font-family: "DejaVu Sans Mono", monospace; font-size: 14px; line-height: 17px; }
pre span { white-space: pre; }
</style>
<div class="win"><div class="bar">%s</div><pre>%s</pre></div>
`, html.EscapeString(title), defaultBG, defaultFG, html.EscapeString(title), b.String())
	return err
}

func main() {
	title := flag.String("title", "terminal", "the window title above the capture")
	flag.Parse()
	if err := convert(os.Stdin, os.Stdout, *title); err != nil {
		fmt.Fprintln(os.Stderr, "ansi2html:", err)
		os.Exit(1)
	}
}
