package container_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/corralhq/corral/internal/api"
	"github.com/corralhq/corral/internal/container"
	"gopkg.in/yaml.v3"
)

// The Kubernetes example in docs/ probes paths the runtime serves.
func TestKubernetesExampleProbes(t *testing.T) {
	b, err := os.ReadFile("../../docs/container/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(container.Handler(emptyBackend{}))
	defer srv.Close()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	probes := 0
	for {
		var doc struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Liveness  *probe `yaml:"livenessProbe"`
							Readiness *probe `yaml:"readinessProbe"`
						}
					}
				}
			}
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubernetes.yaml: %v", err)
		}
		for _, c := range doc.Spec.Template.Spec.Containers {
			for _, p := range []*probe{c.Liveness, c.Readiness} {
				if p == nil {
					t.Fatal("container without liveness and readiness probes")
				}
				res, err := http.Get(srv.URL + p.HTTPGet.Path)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode == http.StatusNotFound {
					t.Errorf("probe path %s is not served", p.HTTPGet.Path)
				}
				probes++
			}
		}
	}
	if probes != 2 {
		t.Fatalf("%d probes checked", probes)
	}
}

type probe struct {
	HTTPGet struct{ Path string } `yaml:"httpGet"`
}

// emptyBackend lists no processes.
type emptyBackend struct{ api.Backend }

func (emptyBackend) List(context.Context) ([]api.Proc, error) { return nil, nil }
