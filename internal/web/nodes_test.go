package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"redial/internal/cluster"
	"redial/internal/store"
	"redial/internal/testenv"
)

func TestGetNodesListsTheDirectory(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	var dirs []*cluster.Directory
	done := make(chan struct{}, 2)
	for _, h := range []string{"n1", "n2"} {
		st := store.NewWithClient(r.Client, store.Config{Host: h})
		d, err := cluster.NewDirectory(cluster.DirectoryConfig{Self: cluster.NodeInfo{Host: h, HTTP: h + ":8088",
			SIP: map[string]string{"udp": h + ":5060"}, Version: "test", Started: time.Now()}}, cluster.DirectoryDeps{Store: st})
		if err != nil {
			t.Fatal(err)
		}
		go func() { d.Run(ctx); done <- struct{}{} }()
		<-d.Ready()
		dirs = append(dirs, d)
	}
	defer func() { cancel(); <-done; <-done }()
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Directory: dirs[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	rec := httptest.NewRecorder()
	s.mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/nodes", nil))
	var body struct {
		Nodes []cluster.NodeState `json:"nodes"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s: %v", rec.Code, rec.Body, err)
	}
	if len(body.Nodes) != 2 || body.Nodes[0].Host != "n1" || body.Nodes[1].Host != "n2" ||
		!body.Nodes[1].Alive || body.Nodes[1].SIP["udp"] != "n2:5060" || body.Nodes[1].HTTP != "n2:8088" || body.Nodes[1].Version != "test" {
		t.Fatalf("nodes: %s", rec.Body)
	}
}
