package admin

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kioskfeed/kioskfeed/broker"
	"github.com/kioskfeed/kioskfeed/internal/httpx"
)

// The dashboard's login and logout, and its live count.

type loginBody struct{ Next string }

func (d *dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if _, ok, err := d.currentSession(r); err == nil && ok {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d.render(w, http.StatusOK, "login", view{Title: "Log in", Notice: notices[r.URL.Query().Get("notice")], Body: loginBody{Next: next}})
}

func (d *dashboard) login(w http.ResponseWriter, r *http.Request) {
	a := d.a
	remote := a.addr.Of(r)
	if err := parseForm(w, r); err != nil {
		d.fail(w, err)
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	v := view{Title: "Log in", Body: loginBody{Next: next}}
	// Wrong passwords are counted (below); once the address's allowance is used up,
	// every attempt is refused before the bcrypt comparison. Bad bearer tokens have an
	// allowance of their own, so they cannot shut the login.
	if blocked, wait := a.loginFails.Blocked(remote); blocked {
		secs := max(int(math.Ceil(wait.Seconds())), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		v.Error = fmt.Sprintf("Too many attempts from your address. Try again in %d seconds.", secs)
		d.render(w, http.StatusTooManyRequests, "login", v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	hash, err := d.sessions.passwordHash(ctx)
	if err != nil {
		d.fail(w, a.unavailable("get admin password", err))
		return
	}
	if hash == nil {
		v.Error = "No dashboard password is set yet. Set one with: kioskfeed admin passwd"
		d.render(w, http.StatusServiceUnavailable, "login", v)
		return
	}
	ok, err := d.checkPassword(ctx, hash, r.PostForm.Get("password"))
	if err != nil {
		d.errorPage(w, http.StatusServiceUnavailable, "Busy", "The server is busy; try again in a moment.")
		return
	}
	if !ok {
		a.loginFails.Allow(remote)
		a.audit(r.Context(), broker.AuditRecord{Type: string(broker.AuditAdminLoginFail), RemoteAddr: remote, Detail: "wrong dashboard password"})
		a.log.Info("dashboard login refused", slog.String("remote_addr", remote))
		v.Error = "That password is not right."
		d.render(w, http.StatusUnauthorized, "login", v)
		return
	}
	// A new id at every login: a session id planted before login is worth nothing.
	if c, err := r.Cookie(a.sessionCookieName()); err == nil {
		_ = d.sessions.end(ctx, c.Value)
	}
	s, err := d.sessions.create(ctx, a.cfg.Now(), remote, r.UserAgent())
	if err != nil {
		d.fail(w, a.unavailable("create admin session", err))
		return
	}
	http.SetCookie(w, a.sessionCookie(s.id, int(SessionTTL/time.Second)))
	a.audit(broker.WithActor(r.Context(), broker.ActorDashboard), broker.AuditRecord{Type: string(broker.AuditAdminLogin), RemoteAddr: remote, Detail: "dashboard login"})
	a.log.Info("dashboard login", slog.String("remote_addr", remote))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// checkPassword compares in one of loginSlots, waiting for a free one.
func (d *dashboard) checkPassword(ctx context.Context, hash []byte, password string) (bool, error) {
	if password == "" || len(password) > 1024 {
		return false, nil
	}
	select {
	case d.loginSlots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-d.loginSlots }()
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, nil
}

func (d *dashboard) logout(w http.ResponseWriter, r *http.Request) {
	a := d.a
	s, ok, err := d.currentSession(r)
	if err != nil {
		d.fail(w, err)
		return
	}
	if ok {
		if err := parseForm(w, r); err != nil {
			d.fail(w, err)
			return
		}
		if !validCSRF(d.csrfKey, s.id, r.PostForm.Get("csrf_token")) {
			d.errorPage(w, http.StatusForbidden, "Refused", "This form has expired or did not come from this dashboard. Go back, reload the page and try again.")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := d.sessions.end(ctx, s.id); err != nil {
			d.fail(w, a.unavailable("end admin session", err))
			return
		}
		remote := a.addr.Of(r)
		a.audit(broker.WithActor(r.Context(), broker.ActorDashboard), broker.AuditRecord{Type: string(broker.AuditAdminLogout), RemoteAddr: remote, Detail: "dashboard logout"})
		a.log.Info("dashboard logout", slog.String("remote_addr", remote))
	}
	http.SetCookie(w, a.sessionCookie("", -1))
	http.Redirect(w, r, "/admin/login?notice=logged_out", http.StatusSeeOther)
}

// live is the dashboard's live count, polled by its script.
func (d *dashboard) live(w http.ResponseWriter, r *http.Request) error {
	_, ok, err := d.currentSession(r)
	if err != nil {
		return err
	}
	if !ok {
		return httpx.Errorf(httpx.CodeInvalidToken, "log in to the dashboard first")
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"online": d.a.presence.OnlineCount()})
	return nil
}
