// The ringing sound while an offer waits: off unless the agent turns it on.

import { renderControls } from "./render.js";
import { keepSound, soundWanted } from "./storage.js";

let audio = null;
let soundOn = soundWanted();
let beepTimer = null;

export function soundIsOn() {
  return soundOn;
}

function beep() {
  if (!soundOn || !audio) return;
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = 880;
  gain.gain.setValueAtTime(0.15, audio.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.35);
  osc.connect(gain).connect(audio.destination);
  osc.start();
  osc.stop(audio.currentTime + 0.35);
}

export function startRinging() {
  stopRinging();
  beep();
  beepTimer = setInterval(beep, 1500);
}

export function stopRinging() {
  clearInterval(beepTimer);
  beepTimer = null;
}

export function toggleSound() {
  soundOn = !soundOn;
  keepSound(soundOn);
  if (soundOn && !audio && window.AudioContext) audio = new AudioContext();
  if (audio && audio.state === "suspended") audio.resume();
  renderControls();
}
