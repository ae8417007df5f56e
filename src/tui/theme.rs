//! Colours. Two palettes (dark and light terminals), chosen in the config's
//! `[console] theme` and switched with `:theme`.

use ratatui::style::{Color, Modifier, Style};

use crate::detect::Decision;

#[derive(Clone, Copy, Debug)]
pub struct Theme {
    pub fg: Color,
    pub dim: Color,
    pub accent: Color,
    pub ok: Color,
    pub warn: Color,
    pub bad: Color,
    pub critical: Color,
    pub select_bg: Color,
}

pub const DARK: Theme = Theme {
    fg: Color::Gray,
    dim: Color::DarkGray,
    accent: Color::Cyan,
    ok: Color::Green,
    warn: Color::Yellow,
    bad: Color::LightRed,
    critical: Color::Magenta,
    select_bg: Color::Rgb(40, 52, 70),
};

pub const LIGHT: Theme = Theme {
    fg: Color::Black,
    dim: Color::Gray,
    accent: Color::Blue,
    ok: Color::Green,
    warn: Color::Rgb(160, 110, 0),
    bad: Color::Red,
    critical: Color::Magenta,
    select_bg: Color::Rgb(205, 220, 240),
};

impl Theme {
    pub fn of(dark: bool) -> Theme {
        if dark { DARK } else { LIGHT }
    }

    pub fn text(&self) -> Style {
        Style::new().fg(self.fg)
    }

    pub fn dimmed(&self) -> Style {
        Style::new().fg(self.dim)
    }

    pub fn title(&self) -> Style {
        Style::new().fg(self.accent).add_modifier(Modifier::BOLD)
    }

    pub fn selected(&self) -> Style {
        Style::new().bg(self.select_bg).add_modifier(Modifier::BOLD)
    }

    /// Severity 0–10 as a colour.
    pub fn severity(&self, sev: u8) -> Style {
        Style::new().fg(match sev {
            9.. => self.critical,
            7..=8 => self.bad,
            4..=6 => self.warn,
            _ => self.fg,
        })
    }

    pub fn decision(&self, d: Decision) -> Style {
        Style::new().fg(match d {
            Decision::Allow => self.ok,
            Decision::Throttle => self.warn,
            Decision::Block => self.bad,
        })
    }
}
