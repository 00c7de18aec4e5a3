package agent

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/govisor/govisor/api"
)

// consoleWriteWait bounds one WebSocket write: a client that stops reading
// is dropped (the VMM drops a slow console client the same way).
const consoleWriteWait = 10 * time.Second

// upgrader accepts console WebSockets. Its default origin check refuses a
// browser page of another origin (cross-site WebSocket hijacking).
var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

// handleConsoleWS serves GET /v1/vms/{name}/console with Upgrade:
// websocket: binary messages from the client go to the guest's serial
// input and the guest's serial output comes back as binary messages, both
// through the VMM's console socket (`govisor run --console-sock`).
func (a *Agent) handleConsoleWS(w http.ResponseWriter, r *http.Request, name string) {
	rec, err := a.st.GetVM(r.Context(), name)
	if err != nil {
		httpError(w, err)
		return
	}
	if _, err := a.liveProc(rec, "attach to the console of", api.StateRunning, api.StatePaused); err != nil {
		httpError(w, err)
		return
	}
	sock := filepath.Join(a.vmDir(name), consoleSockName)
	vc, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		httpError(w, fmt.Errorf("%w: console of %s: %v", ErrVMM, name, err))
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		vc.Close() // Upgrade answered the client already
		return
	}
	proxyConsole(ws, vc)
}

// proxyConsole copies between the WebSocket and the VMM's console socket
// until either side ends, then closes both.
func proxyConsole(ws *websocket.Conn, vc net.Conn) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			vc.Close()
			ws.Close()
		})
	}
	defer closeBoth()
	ws.SetReadLimit(1 << 16)
	go func() {
		defer closeBoth()
		buf := make([]byte, 4096)
		for {
			n, err := vc.Read(buf)
			if n > 0 {
				ws.SetWriteDeadline(time.Now().Add(consoleWriteWait))
				if werr := ws.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				// The VM stopped: say so in a close frame.
				ws.SetWriteDeadline(time.Now().Add(time.Second))
				ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "console closed"))
				return
			}
		}
	}()
	for {
		kind, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if kind != websocket.BinaryMessage && kind != websocket.TextMessage {
			continue
		}
		vc.SetWriteDeadline(time.Now().Add(consoleWriteWait))
		if _, err := vc.Write(msg); err != nil {
			return
		}
	}
}
