export { ensureStubImage, STUB_IMAGE } from '../../src/dev/stub-image.js';
