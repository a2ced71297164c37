package appspec

import (
	"fmt"
	"strings"
)

// StartOrder orders apps by depends_on: every app comes after the apps of the list it depends on,
// and otherwise keeps its place. A dependency must name an app of the list or one that exists
// already (exists reports those; nil means none). An unknown name or a cycle is an error, found
// before anything starts. It returns the indexes of apps in start order.
func StartOrder(apps []App, exists func(name string) bool) ([]int, error) {
	index := map[string]int{}
	for i, a := range apps {
		if _, dup := index[a.Name]; !dup {
			index[a.Name] = i
		}
	}
	for _, a := range apps {
		for _, d := range a.DependsOn {
			if _, ok := index[d.Name]; ok {
				continue
			}
			if exists != nil && exists(d.Name) {
				continue
			}
			return nil, fmt.Errorf("depends_on: %s depends on %q, which is neither in this start nor running", a.Name, d.Name)
		}
	}
	const (
		unseen = iota
		visiting
		done
	)
	state := make([]int, len(apps))
	var order []int
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("depends_on: cycle %s", strings.Join(append(path, apps[i].Name), " → "))
		}
		state[i] = visiting
		for _, d := range apps[i].DependsOn {
			if j, ok := index[d.Name]; ok {
				if err := visit(j, append(path, apps[i].Name)); err != nil {
					return err
				}
			}
		}
		state[i] = done
		order = append(order, i)
		return nil
	}
	for i := range apps {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// StopWaves groups apps for a stop in reverse dependency order: the first wave holds the apps
// nothing (among apps) depends on, the next the apps only those depend on, and so on. Apps of
// one wave may stop together. deps gives an app's dependencies by name. A cycle (which StartOrder
// refuses) ends the grouping with what is left as one wave.
func StopWaves(names []string, deps func(name string) []string) [][]string {
	left := map[string]bool{}
	for _, n := range names {
		left[n] = true
	}
	var waves [][]string
	for len(left) > 0 {
		needed := map[string]bool{} // depended on by an app still to stop
		for n := range left {
			for _, d := range deps(n) {
				if left[d] && d != n {
					needed[d] = true
				}
			}
		}
		var wave []string
		for _, n := range names {
			if left[n] && !needed[n] {
				wave = append(wave, n)
			}
		}
		if len(wave) == 0 { // a cycle: stop the rest together
			for _, n := range names {
				if left[n] {
					wave = append(wave, n)
				}
			}
		}
		for _, n := range wave {
			delete(left, n)
		}
		waves = append(waves, wave)
	}
	return waves
}
