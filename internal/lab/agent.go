package lab

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// AgentPort is where a lab host's agent listens, on its lab address.
const AgentPort = 7070

// ExecRequest is a command for a lab host's agent to run.
type ExecRequest struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"` // added to the agent's environment
	Dir  string   `json:"dir,omitempty"`
	// Background starts the command and answers at once, leaving it
	// running (for services such as govisor serve); its output goes to Log.
	Background bool   `json:"background,omitempty"`
	Log        string `json:"log,omitempty"`
}

// exitTrailer carries the command's exit code after its streamed output.
const exitTrailer = "X-Exit-Code"

// AgentHandler is the lab host's agent: it runs commands for `govisor lab
// exec` and the lab's own set-up, streaming their output. Every request
// must carry the lab's token (the lab bridge is private, but a guest of
// a lab host could reach it).
func AgentHandler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /exec", func(w http.ResponseWriter, r *http.Request) {
		var req ExecRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Args) == 0 {
			http.Error(w, "lab agent: want a JSON body with a non-empty args list", http.StatusBadRequest)
			return
		}
		runExec(w, r.Context(), req)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
			http.Error(w, "lab agent: wrong or missing token", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// flushWriter sends each write to the client at once.
type flushWriter struct {
	mu sync.Mutex
	w  http.ResponseWriter
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func runExec(w http.ResponseWriter, ctx context.Context, req ExecRequest) {
	if req.Background {
		cmd := exec.Command(req.Args[0], req.Args[1:]...)
		cmd.Env, cmd.Dir = append(cmd.Environ(), req.Env...), req.Dir
		if req.Log != "" {
			f, err := openLog(req.Log)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			cmd.Stdout, cmd.Stderr = f, f
		}
		if err := cmd.Start(); err != nil {
			http.Error(w, "lab agent: "+err.Error(), http.StatusInternalServerError)
			return
		}
		go cmd.Wait()
		w.Header().Set(exitTrailer, "0")
		fmt.Fprintf(w, "%d\n", cmd.Process.Pid)
		return
	}
	w.Header().Set("Trailer", exitTrailer)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	out := &flushWriter{w: w}
	cmd := exec.CommandContext(ctx, req.Args[0], req.Args[1:]...)
	cmd.Env, cmd.Dir = append(cmd.Environ(), req.Env...), req.Dir
	cmd.Stdout, cmd.Stderr = out, out
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			code = ee.ExitCode()
		} else {
			fmt.Fprintf(out, "lab agent: %v\n", err)
			code = 127
		}
	}
	w.Header().Set(exitTrailer, strconv.Itoa(code))
}

// AgentClient talks to one lab host's agent.
type AgentClient struct {
	Addr  string // host:port
	Token string
	HTTP  *http.Client
}

func (c *AgentClient) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("lab: agent %s: %w", c.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("lab: agent %s: %s: %s", c.Addr, resp.Status, bytes.TrimSpace(msg))
	}
	return resp, nil
}

// Healthy reports whether the agent answers.
func (c *AgentClient) Healthy(ctx context.Context) bool {
	resp, err := c.do(ctx, "GET", "/healthz", nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// Exec runs req on the lab host, copying its output to out, and returns
// its exit code.
func (c *AgentClient) Exec(ctx context.Context, req ExecRequest, out io.Writer) (int, error) {
	resp, err := c.do(ctx, "POST", "/exec", req)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(out, resp.Body); err != nil {
		return -1, fmt.Errorf("lab: agent %s: output: %w", c.Addr, err)
	}
	code, err := strconv.Atoi(resp.Trailer.Get(exitTrailer))
	if err != nil {
		if code, err = strconv.Atoi(resp.Header.Get(exitTrailer)); err != nil {
			return -1, fmt.Errorf("lab: agent %s: the command's exit code did not arrive (connection cut?)", c.Addr)
		}
	}
	return code, nil
}

// Output runs args on the lab host and returns its output, failing on a
// non-zero exit.
func (c *AgentClient) Output(ctx context.Context, args ...string) (string, error) {
	var b bytes.Buffer
	code, err := c.Exec(ctx, ExecRequest{Args: args}, &b)
	if err != nil {
		return b.String(), err
	}
	if code != 0 {
		return b.String(), fmt.Errorf("lab: %v on %s: exit %d: %s", args, c.Addr, code, bytes.TrimSpace(b.Bytes()))
	}
	return b.String(), nil
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab agent: %w", err)
	}
	return f, nil
}
