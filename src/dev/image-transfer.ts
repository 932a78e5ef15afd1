/**
 * Copy an image from one engine to another with no registry: `docker save` on one, `docker load` on
 * the other, streamed through dockerode. How the stub image reaches isolated hosts' engines.
 */
import type Dockerode from 'dockerode';

export async function loadImageInto(from: Dockerode, to: Dockerode, tag: string): Promise<void> {
  const tarball = await from.getImage(tag).get();
  const response = await to.loadImage(tarball, { quiet: true });
  // The load answers with JSON lines; an error arrives as { errorDetail } inside a 200 response.
  const text = await new Promise<string>((resolve, reject) => {
    let body = '';
    response.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    response.on('end', () => resolve(body));
    response.on('error', reject);
  });
  for (const line of text.split('\n').filter((l) => l.trim())) {
    let message: { error?: string; errorDetail?: { message?: string } };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      continue;
    }
    if (message.error || message.errorDetail) throw new Error(`loading ${tag}: ${message.errorDetail?.message ?? message.error}`);
  }
  await to.getImage(tag).inspect().catch((err: Error) => {
    throw new Error(`loading ${tag}: the target engine does not have it afterwards (${err.message})`);
  });
}
