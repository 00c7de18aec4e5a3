package httpapi

import (
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// consoleWriteWait bounds one WebSocket write: a client that stops reading
// is dropped (the VMM drops a slow console client the same way).
const consoleWriteWait = 10 * time.Second

// upgrader accepts console WebSockets. Its default origin check refuses a
// browser page of another origin (cross-site WebSocket hijacking).
var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

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
