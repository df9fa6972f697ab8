/**
 * Renders a provisioning payload (qrPayloadText) as a QR code, PNG or SVG, with the `qrcode`
 * package: error correction M and a 4-module quiet zone. No I/O beyond the library.
 * A payload too large for any QR code at level M is refused with `validation_failed`.
 */
import QRCode from 'qrcode';
import { Errors } from '../../src/core/errors';
import { qrCapacityWarning } from './provisioning';

const ERROR_CORRECTION = 'M';
const MARGIN = 4;
/** Target image width; the PNG uses the whole-pixel module size that comes closest. */
export const QR_TARGET_WIDTH = 512;

function ensureFits(text: string): void {
  const notice = qrCapacityWarning(text);
  if (notice?.level === 'error') throw Errors.validation(notice.message, { errors: [{ path: 'payload', message: notice.message }] });
}

/**
 * Pixels per module: a whole number, so every module is the same size. (A fractional scale, which
 * `width: 512` gives, makes uneven modules that decoders miss: a 700-byte payload at 512 px fails jsQR.)
 */
function pixelsPerModule(text: string): number {
  const modules = QRCode.create(text, { errorCorrectionLevel: ERROR_CORRECTION }).modules.size + 2 * MARGIN;
  return Math.max(2, Math.round(QR_TARGET_WIDTH / modules));
}

/**
 * pngjs options the qrcode typings leave out: 8-bit grayscale with the "Up" row filter, about half the
 * bytes of the default RGBA image and quicker to encode. A fresh object each call: qrcode writes into it.
 */
function pngRendererOpts(): { deflateLevel: number } {
  const opts = { deflateLevel: 9, colorType: 0, filterType: 2 };
  return opts;
}

/** The QR code as a grayscale PNG image, about 512 px square (a whole number of pixels per module). */
export async function qrPng(text: string): Promise<Buffer> {
  ensureFits(text);
  return QRCode.toBuffer(text, {
    type: 'png',
    errorCorrectionLevel: ERROR_CORRECTION,
    margin: MARGIN,
    scale: pixelsPerModule(text),
    rendererOpts: pngRendererOpts(),
  });
}

/** The QR code as an SVG document (vector, with a viewBox; 512 px nominal size). */
export async function qrSvg(text: string): Promise<string> {
  ensureFits(text);
  return QRCode.toString(text, { type: 'svg', errorCorrectionLevel: ERROR_CORRECTION, margin: MARGIN, width: QR_TARGET_WIDTH });
}
