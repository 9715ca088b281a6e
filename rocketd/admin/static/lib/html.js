// Preact + htm, the UI's only framework: `html` tagged templates instead of JSX, so the files
// run as they are, without a build step.
import { h, render, Fragment, createContext } from '../vendor/preact.js';
import htm from '../vendor/htm.js';

export { useState, useEffect, useLayoutEffect, useRef, useMemo, useCallback, useContext } from '../vendor/preact-hooks.js';
export { h, render, Fragment, createContext };
export const html = htm.bind(h);
