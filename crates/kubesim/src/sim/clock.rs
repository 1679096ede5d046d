//! Simulated time: one speed factor maps every simulated duration to real
//! time. Timers are kept in simulated seconds, so changing the speed at run
//! time rescales the waits already in flight too.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State {
    speed: f64,
    /// Simulated seconds at `base_real`.
    base_sim: f64,
    base_real: Instant,
}

/// The simulation clock. `speed` 60 = one simulated minute per real second.
#[derive(Debug)]
pub struct Clock {
    state: Mutex<State>,
}

impl Clock {
    pub fn new(speed: f64) -> Clock {
        Clock {
            state: Mutex::new(State {
                speed: sanitize(speed),
                base_sim: 0.0,
                base_real: Instant::now(),
            }),
        }
    }

    pub fn speed(&self) -> f64 {
        self.state.lock().speed
    }

    /// Changes the speed from now on; simulated time stays continuous.
    pub fn set_speed(&self, speed: f64) {
        let mut s = self.state.lock();
        let now = Instant::now();
        s.base_sim += now.duration_since(s.base_real).as_secs_f64() * s.speed;
        s.base_real = now;
        s.speed = sanitize(speed);
    }

    /// Simulated seconds since the simulation started.
    pub fn now(&self) -> f64 {
        let s = self.state.lock();
        s.base_sim + Instant::now().duration_since(s.base_real).as_secs_f64() * s.speed
    }

    /// The real instant at which simulated time reaches `sim`.
    pub fn instant_at(&self, sim: f64) -> Instant {
        let s = self.state.lock();
        let ahead = ((sim - s.base_sim) / s.speed).max(0.0);
        s.base_real + Duration::from_secs_f64(ahead.min(1e9))
    }

    /// A simulated duration in real time at the current speed.
    pub fn real(&self, sim_seconds: f64) -> Duration {
        Duration::from_secs_f64((sim_seconds / self.speed()).clamp(0.0, 1e9))
    }
}

fn sanitize(speed: f64) -> f64 {
    if speed.is_finite() && speed > 0.0 { speed } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_change_keeps_time_continuous() {
        let c = Clock::new(1000.0);
        std::thread::sleep(Duration::from_millis(20));
        let before = c.now();
        assert!(before >= 20.0, "{before}");
        c.set_speed(1.0);
        let after = c.now();
        assert!(after >= before && after < before + 1.0, "{before} {after}");
        assert!(c.real(2.0) >= Duration::from_secs(2));
    }
}
