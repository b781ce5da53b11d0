package pwa

// manifest is the web app manifest. It names the app and nothing else: start_url is the
// bare root, the same for every tablet, because a tablet's credential is its key and
// never a URL.
type manifest struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	ShortName       string         `json:"short_name"`
	Description     string         `json:"description"`
	Lang            string         `json:"lang"`
	StartURL        string         `json:"start_url"`
	Scope           string         `json:"scope"`
	Display         string         `json:"display"`
	DisplayOverride []string       `json:"display_override"`
	Orientation     string         `json:"orientation"`
	BackgroundColor string         `json:"background_color"`
	ThemeColor      string         `json:"theme_color"`
	Icons           []manifestIcon `json:"icons"`
}

type manifestIcon struct {
	Src     string `json:"src"`
	Sizes   string `json:"sizes"`
	Type    string `json:"type"`
	Purpose string `json:"purpose"`
}

// buildManifest uses urls (source name → hashed URL) for the icons.
func buildManifest(name string, urls map[string]string) manifest {
	m := manifest{
		ID: "/", Name: name, ShortName: shortName(name),
		Description: "A live feed display for a wall tablet.",
		Lang:        "en",
		StartURL:    "/", Scope: "/",
		// Fullscreen hides the status bar on Android; where a browser cannot do it,
		// standalone still hides the address bar.
		Display: "fullscreen", DisplayOverride: []string{"fullscreen", "standalone"},
		Orientation:     "any",
		BackgroundColor: backgroundColor, ThemeColor: themeColor,
	}
	for _, ic := range icons {
		if ic.purpose == "" {
			continue // not for the manifest (the apple-touch-icon)
		}
		m.Icons = append(m.Icons, manifestIcon{Src: urls[ic.file], Sizes: ic.sizes(), Type: "image/png", Purpose: ic.purpose})
	}
	return m
}
