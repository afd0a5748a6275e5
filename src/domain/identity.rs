//! Who is on the other end of a socket, as established by a verified token.

use serde::Serialize;

use super::ids::UserId;

/// The identity every event is stamped with; never taken from a client payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub user_id: UserId,
    pub username: String,
    pub color: String,
}

impl Identity {
    pub fn new(user_id: UserId, username: String) -> Self {
        let color = color_for(&user_id);
        Self {
            user_id,
            username,
            color,
        }
    }
}

/// A user's colour, a pure function of the id so that every instance agrees without sharing state.
/// FNV-1a picks a hue; fixed saturation and lightness keep every colour legible on white.
pub fn color_for(user: &UserId) -> String {
    let hash = user
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let hue = (hash % 360) as f64;
    let (r, g, b) = hsl_to_rgb(hue, 0.65, 0.45);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match h as u32 {
        0..60 => (c, x, 0.0),
        60..120 => (x, c, 0.0),
        120..180 => (0.0, c, x),
        180..240 => (0.0, x, c),
        240..300 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let to_byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (to_byte(r), to_byte(g), to_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_is_deterministic_and_well_formed() {
        let a = color_for(&UserId::new("alice"));
        assert_eq!(a, color_for(&UserId::new("alice")));
        assert_ne!(a, color_for(&UserId::new("bob")));
        assert_eq!(a.len(), 7);
        assert!(a.starts_with('#') && a[1..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
